//! What the CLI prints: the run summary (stderr, or JSON on stdout) and the
//! model list.

use std::io::Write;
use std::path::Path;

use usersim::models::ModelListing;
use usersim::run::RunSummary;
use usersim::session::best_of::FactorCounts;

/// The end-of-run summary: human text on stderr, or JSON on stdout (on
/// stderr when the conversations themselves go to stdout).
pub fn summary(s: &RunSummary, output: &Path, json: bool) -> anyhow::Result<()> {
    if json {
        let text = serde_json::to_string_pretty(s)?;
        if output == Path::new("-") {
            eprintln!("{text}");
        } else {
            writeln!(std::io::stdout(), "{text}")?;
        }
        return Ok(());
    }
    let counts = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let guard = if s.guard_rejections.is_empty() {
        String::new()
    } else {
        format!(
            "\n  role guard: {} resampled, {} kept after the last resample",
            counts(&s.guard_rejections),
            s.guard_kept_rejected
        )
    };
    let critic = if s.critic.score.turns == 0 {
        String::new()
    } else {
        let c = &s.critic;
        let kept_vs_all = |what: &str, f: &FactorCounts| {
            if f.turns == 0 {
                String::new()
            } else {
                format!(
                    "; {what} {:.3} kept vs {:.3} over all",
                    f.mean_chosen(),
                    f.mean_candidate()
                )
            }
        };
        format!(
            "\n  critic: mean score {:.3} kept vs {:.3} over all {} candidates ({} turns){}{}",
            c.score.mean_chosen(),
            c.score.mean_candidate(),
            c.score.candidates,
            c.score.turns,
            kept_vs_all("drawn intent read at", &c.intent),
            kept_vs_all("length fit", &c.length),
        )
    };
    let b = &s.backend;
    let kv = if b.kv_bytes_per_token == 0 {
        String::new()
    } else {
        let mib = |bytes: f64| bytes / (1024.0 * 1024.0) / s.parallel.max(1) as f64;
        format!(
            "\n  KV cache: {:.1} MiB per conversation allocated, at most {:.1} MiB per conversation in use",
            mib(b.kv_cache_bytes as f64),
            mib((b.peak_kv_tokens * b.kv_bytes_per_token) as f64),
        )
    };
    let guard = format!("{guard}{critic}{kv}");
    eprintln!(
        "{} conversations -> {}\n  turns: {} user, {} assistant\n  tokens: {} generated ({} by users) in {:.1}s\n  throughput: {:.1} tok/s aggregate, {:.1} tok/s per conversation ({} in parallel), {:.1} conversations/min\n  prompt tokens: {} computed, {} reused ({} from shared prefixes)\n  intents: {}\n  ended: {}{guard}",
        s.conversations,
        output.display(),
        s.user_turns,
        s.assistant_turns,
        s.tokens_generated,
        s.user_tokens,
        s.seconds,
        s.tokens_per_second,
        s.tokens_per_second_per_conversation,
        s.parallel,
        s.conversations_per_minute,
        s.backend.prompt_tokens_evaluated,
        s.backend.prompt_tokens_reused,
        s.backend.prompt_tokens_from_shared_prefix,
        counts(&s.intents),
        counts(&s.end_reasons),
    );
    Ok(())
}

/// `models list`: one line a model, or JSON.
pub fn models(rows: &[ModelListing], json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(rows)?)?;
        return Ok(());
    }
    for r in rows {
        writeln!(
            out,
            "{}{}\t{}\t{}",
            r.name,
            if r.default { " (default)" } else { "" },
            if r.cached.is_some() {
                "cached"
            } else {
                "not cached"
            },
            r.description
        )?;
    }
    Ok(())
}
