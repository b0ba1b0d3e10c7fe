//! `usersim bench` on the real model: rows for each parallel count, the
//! real loop against llama.cpp's raw speed measured in the same run. No
//! timing is asserted, only that the figures are measured and consistent.
//! Each row also runs through a local llama-server (`--llama-server`).

use std::process::Command;

#[test]
fn bench_measures_raw_and_real_loop_per_parallel_count() {
    let _heavy = crate::util::heavy();
    crate::util::model_path();
    let rows = crate::util::bench_json_rows(
        Command::new(crate::util::bin())
            .args([
                "bench",
                "--parallel",
                "2,1",
                "--sessions-per-slot",
                "2",
                "--max-turns",
                "1",
                "--raw-steps",
                "8",
                "--raw-prompt-tokens",
                "32",
                "--threads",
                "2",
                "--json",
                "-q",
                "--llama-server",
            ])
            .arg(crate::util::llama_server_binary()),
    );
    assert_eq!(rows.len(), 2);
    for (row, p) in rows.iter().zip([1u64, 2]) {
        let f = |k: &str| {
            row[k]
                .as_f64()
                .unwrap_or_else(|| panic!("{k} missing: {row}"))
        };
        assert_eq!(row["parallel"].as_u64(), Some(p));
        assert_eq!(row["conversations"].as_u64(), Some(2 * p));
        for k in [
            "raw_prompt_tokens_per_second",
            "raw_decode_tokens_per_second",
            "decode_tokens_per_second",
            "generation_call_tokens_per_second",
            "conversations_per_minute",
        ] {
            assert!(f(k) > 0.0, "{k} = {}", f(k));
        }
        let ratio = f("decode_tokens_per_second") / f("raw_decode_tokens_per_second");
        assert!((f("ratio") - ratio).abs() < 1e-9);
        // Each side reads what the other wrote, plus system prompts and
        // per-turn instructions: more prompt than generated tokens.
        assert!(f("prompt_tokens_per_generated_token") > 1.0, "{row}");
        // A ratio of two timings: anything positive and finite (its size
        // moves with whatever else the machine runs, so no bound here).
        assert!(
            f("work_ratio") > 0.0 && f("work_ratio").is_finite(),
            "{row}"
        );
        assert!(row["prompt_tokens_from_shared_prefix"].as_u64() > Some(0));
        assert!(row["kv_bytes_per_session"].as_u64() > Some(0));
        // The same sessions through llama-server and the openai backend.
        let server = &row["server"];
        assert_eq!(server["conversations"].as_u64(), Some(2 * p), "{row}");
        let sv = server["decode_tokens_per_second"].as_f64().unwrap();
        assert!(sv > 0.0 && server["conversations_per_minute"].as_f64() > Some(0.0));
        let rel = server["in_process_over_server"].as_f64().unwrap();
        assert!(
            (rel - f("decode_tokens_per_second") / sv).abs() < 1e-9,
            "{row}"
        );
        // The loop decodes behind system prompts and earlier turns: deeper
        // than the raw ceiling's 32-token context, and the depth-matched
        // ceiling is measured there.
        assert!(f("loop_decode_depth") > 100.0, "{row}");
        for k in [
            "raw_decode_tokens_per_second_at_loop_depth",
            "generation_call_ratio_at_loop_depth",
            "depth_matched_work_ratio",
        ] {
            assert!(f(k) > 0.0 && f(k).is_finite(), "{k}: {row}");
        }
        // Speedups divide by the first row's (parallel 1) figures.
        let first = &rows[0];
        for (k, base) in [
            ("raw_decode_speedup", "raw_decode_tokens_per_second"),
            ("decode_speedup", "decode_tokens_per_second"),
        ] {
            let want = f(base) / first[base].as_f64().unwrap();
            assert!((f(k) - want).abs() < 1e-9, "{k}: {row}");
        }
        // The model and its KV cache are resident.
        assert!(row["peak_rss_bytes"].as_u64() > Some(100 << 20), "{row}");
    }
}

#[test]
fn a_parallel_count_whose_kv_sequences_do_not_fit_is_refused_before_any_row() {
    crate::util::model_path();
    // The movies default decodes 8 candidates a seeker turn: 9 KV
    // sequences a conversation, so 28 conversations at most.
    let o = Command::new(crate::util::bin())
        .args([
            "bench",
            "--parallel",
            "1,32",
            "--max-turns",
            "1",
            "--json",
            "-q",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(o.stdout.is_empty(), "no row was measured");
    let line = stderr.lines().find(|l| l.starts_with("error:")).unwrap();
    for needle in ["--parallel 32", "at most 28", "best-of 8"] {
        assert!(line.contains(needle), "{line}");
    }
}
