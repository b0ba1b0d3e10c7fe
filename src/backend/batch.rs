//! What goes into one engine step: the batch builder's decision, kept apart
//! from llama.cpp so it can be tested and benchmarked on its own.
//!
//! A step is one llama.cpp call with the next token of every generating
//! sequence, then one call per sequence still reading its prompt, each with
//! as many prompt tokens as the step's token budget still allows. Prefill
//! calls hold a single sequence because llama.cpp makes a sequence's logits
//! depend on its neighbours when a call mixes sequences of unequal token
//! counts; decode tokens go first so generation never waits for a long
//! prompt. Prompts are served round-robin: each step's scan starts at the
//! slot served last, so a sequence in a high slot is not starved while
//! lower slots keep receiving new prompts (it was, with slot order: in a
//! 1,000-conversation run at 64 slots three conversations waited for an
//! hour).

/// What the builder needs to know of one slot's sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotView {
    /// A sampled token waits to be decoded.
    pub pending: bool,
    /// Tokens already in the sequence's KV cache.
    pub cached: usize,
    /// Length of the prompt the sequence must hold before it generates.
    pub prompt_len: usize,
}

/// The plan of one step, reused across steps so planning allocates nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepPlan {
    /// Slots whose pending token is decoded, in slot order.
    pub decode: Vec<usize>,
    /// `(slot, tokens)`: prompt tokens each prefilling slot reads, from its
    /// cached length on, in round-robin order from `prefill_from`.
    pub prefill: Vec<(usize, usize)>,
    /// Where the next step's prompt scan starts: the slot served last (it
    /// may still have prompt left, which it then continues first).
    pub prefill_from: usize,
}

impl StepPlan {
    /// Tokens the step evaluates.
    pub fn tokens(&self) -> usize {
        self.decode.len() + self.prefill.iter().map(|&(_, n)| n).sum::<usize>()
    }
}

/// Plan one step over `slots` (`None`: free slot) within `budget` tokens.
/// With `align` above 1 a prompt chunk that does not finish its prompt holds
/// a multiple of `align` tokens, so where chunks end depends on the prompt
/// alone, not on the budget other slots left (an engine whose token rows
/// are computed in groups needs every prompt cut alike at any
/// `--parallel`); a budget below `align` still feeds a prompt when nothing
/// else would run.
pub fn plan_step(slots: &[Option<SlotView>], budget: usize, align: usize, plan: &mut StepPlan) {
    plan.decode.clear();
    plan.prefill.clear();
    let mut left = budget;
    for (i, s) in slots.iter().enumerate() {
        if let Some(s) = s {
            if s.pending {
                plan.decode.push(i);
                left = left.saturating_sub(1);
            }
        }
    }
    let n_slots = slots.len();
    let start = if plan.prefill_from < n_slots {
        plan.prefill_from
    } else {
        0
    };
    for i in (start..n_slots).chain(0..start) {
        if left == 0 {
            break;
        }
        let Some(s) = &slots[i] else { continue };
        if s.pending || s.cached >= s.prompt_len {
            continue;
        }
        let rest = s.prompt_len - s.cached;
        let mut n = rest.min(left);
        if n < rest && align > 1 {
            let aligned = n - n % align;
            let idle = plan.decode.is_empty() && plan.prefill.is_empty();
            n = if aligned == 0 && idle { n } else { aligned };
        }
        if n == 0 {
            continue;
        }
        plan.prefill.push((i, n));
        left -= n;
    }
    if let Some(&(last, _)) = plan.prefill.last() {
        plan.prefill_from = last;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(pending: bool, cached: usize, prompt_len: usize) -> Option<SlotView> {
        Some(SlotView {
            pending,
            cached,
            prompt_len,
        })
    }

    #[test]
    fn decode_first_then_prompts_in_slot_order_within_budget() {
        let slots = [
            view(false, 10, 300),
            None,
            view(true, 50, 40),
            view(false, 0, 100),
            view(true, 7, 7),
            view(false, 20, 20),
        ];
        let mut plan = StepPlan::default();
        plan_step(&slots, 256, 1, &mut plan);
        assert_eq!(plan.decode, vec![2, 4]);
        // 254 tokens left: slot 0 needs 290 and takes them all.
        assert_eq!(plan.prefill, vec![(0, 254)]);
        assert_eq!(plan.tokens(), 256);

        plan_step(&slots, 400, 1, &mut plan);
        assert_eq!(plan.prefill, vec![(0, 290), (3, 100)]);
        assert_eq!(plan.tokens(), 392);
    }

    #[test]
    fn prompts_are_served_round_robin_so_no_slot_starves() {
        // Every slot always has a prompt to read: when one is read, a new
        // conversation arrives in the slot. Slot order would serve slot 0
        // forever.
        let mut slots: Vec<_> = (0..6).map(|_| view(false, 0, 1000)).collect();
        let mut served = [0usize; 6];
        let mut plan = StepPlan::default();
        for _ in 0..60 {
            plan_step(&slots, 300, 1, &mut plan);
            assert_eq!(plan.tokens(), 300);
            for &(i, n) in &plan.prefill {
                served[i] += n;
                let s = slots[i].as_mut().expect("slot");
                s.cached += n;
                if s.cached == s.prompt_len {
                    s.cached = 0;
                }
            }
        }
        // 18,000 tokens over 6 slots: each got its share, within a prompt.
        for (i, &t) in served.iter().enumerate() {
            assert!((2000..=4000).contains(&t), "slot {i} read {t}: {served:?}");
        }
    }

    #[test]
    fn aligned_chunks_end_where_the_prompt_says_whatever_the_budget() {
        // Slot 0 reads 290 prompt tokens; with 1 or 3 decoding neighbours
        // the budget left differs, the chunk ends stay on multiples of 4.
        for decoding in [1, 3] {
            let mut slots = vec![view(false, 2, 292)];
            slots.extend((0..decoding).map(|_| view(true, 5, 5)));
            let mut plan = StepPlan::default();
            let mut ends = Vec::new();
            while slots[0].unwrap().cached < 292 {
                plan_step(&slots, 103, 4, &mut plan);
                let &(i, n) = plan.prefill.first().expect("a chunk");
                assert_eq!(i, 0);
                let s = slots[0].as_mut().unwrap();
                s.cached += n;
                ends.push(s.cached);
            }
            assert!(
                ends[..ends.len() - 1].iter().all(|e| (e - 2) % 4 == 0),
                "{ends:?}"
            );
            assert_eq!(*ends.last().unwrap(), 292);
        }
        // A budget below the group still feeds an idle engine.
        let mut plan = StepPlan::default();
        plan_step(&[view(false, 0, 10)], 3, 4, &mut plan);
        assert_eq!(plan.prefill, vec![(0, 3)]);
    }

    #[test]
    fn decode_tokens_are_never_cut_by_the_budget() {
        let slots: Vec<_> = (0..8).map(|_| view(true, 5, 5)).collect();
        let mut plan = StepPlan::default();
        plan_step(&slots, 4, 1, &mut plan);
        assert_eq!(plan.decode.len(), 8);
        assert!(plan.prefill.is_empty());
    }
}
