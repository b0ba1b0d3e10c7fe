//! The batch builder: planning one engine step (which sequences decode,
//! which prompt chunks are read) over 64 and 256 slots.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use usersim::backend::batch::{plan_step, SlotView, StepPlan};

/// A realistic mix: most slots generating, some reading a new turn's
/// prompt, some free.
fn slots(n: usize) -> Vec<Option<SlotView>> {
    (0..n)
        .map(|i| match i % 8 {
            0 => None,
            1 | 2 => Some(SlotView {
                pending: false,
                cached: 100 * (i % 5),
                prompt_len: 100 * (i % 5) + 120,
            }),
            _ => Some(SlotView {
                pending: true,
                cached: 300 + i,
                prompt_len: 250,
            }),
        })
        .collect()
}

fn planning(c: &mut Criterion) {
    let mut plan = StepPlan::default();
    for n in [64usize, 256] {
        let s = slots(n);
        c.bench_function(&format!("plan_step over {n} slots, budget 512"), |b| {
            b.iter(|| {
                plan_step(black_box(&s), 512, 1, &mut plan);
                plan.tokens()
            })
        });
    }
}

criterion_group!(benches, planning);
criterion_main!(benches);
