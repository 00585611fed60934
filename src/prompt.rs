//! The prompt syntax shared by `generate` and the editor: `[MASK]` is one masked token and
//! `[MASK:N]` is N of them; everything else is literal text.

use anyhow::{bail, Result};

/// A piece of a parsed prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Text(String),
    Masks(usize),
}

/// Splits a prompt into literal text and mask runs. Adjacent mask markers are merged.
pub fn parse(prompt: &str) -> Result<Vec<Segment>> {
    let mut segments: Vec<Segment> = Vec::new();
    let mut rest = prompt;
    while let Some(start) = rest.find("[MASK") {
        let after = &rest[start + "[MASK".len()..];
        let (count, consumed) = if after.starts_with(']') {
            (1, 1)
        } else if let Some(spec) = after.strip_prefix(':') {
            let Some(end) = spec.find(']') else {
                bail!("unterminated mask marker at byte {start}: write [MASK] or [MASK:N]");
            };
            let digits = &spec[..end];
            let count: usize = match digits.trim().parse() {
                Ok(n) if n > 0 => n,
                _ => bail!(
                    "invalid mask count {digits:?} in [MASK:{digits}]: use a whole number from 1"
                ),
            };
            (count, 1 + end + 1)
        } else {
            // Not a marker ("[MASKED" etc.): keep it as text.
            push_text(&mut segments, &rest[..start + 1]);
            rest = &rest[start + 1..];
            continue;
        };
        push_text(&mut segments, &rest[..start]);
        match segments.last_mut() {
            Some(Segment::Masks(n)) => {
                *n = n.checked_add(count).ok_or_else(|| {
                    anyhow::anyhow!("adjacent mask markers at byte {start} add up to more masks than can be counted")
                })?
            }
            _ => segments.push(Segment::Masks(count)),
        }
        rest = &after[consumed..];
    }
    push_text(&mut segments, rest);
    Ok(segments)
}

/// The number of masks the segments hold, `None` if it overflows.
pub fn mask_total(segments: &[Segment]) -> Option<usize> {
    segments.iter().try_fold(0usize, |sum, s| match s {
        Segment::Masks(n) => sum.checked_add(*n),
        Segment::Text(_) => Some(sum),
    })
}

fn push_text(segments: &mut Vec<Segment>, text: &str) {
    if text.is_empty() {
        return;
    }
    match segments.last_mut() {
        Some(Segment::Text(t)) => t.push_str(text),
        _ => segments.push(Segment::Text(text.to_string())),
    }
}

/// Writes segments back in prompt syntax (the inverse of [`parse`]).
pub fn render(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| match s {
            Segment::Text(t) => t.clone(),
            Segment::Masks(1) => "[MASK]".to_string(),
            Segment::Masks(n) => format!("[MASK:{n}]"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_counts_are_errors_not_overflows() {
        assert!(parse("[MASK][MASK:18446744073709551615]").is_err());
        assert!(parse("[MASK:18446744073709551616]").is_err());
        let s = parse("[MASK:18446744073709551615] and [MASK:2]").unwrap();
        assert_eq!(mask_total(&s), None);
        assert_eq!(mask_total(&parse("a [MASK:3] b [MASK]").unwrap()), Some(4));
    }

    #[test]
    fn parses_masks_and_text() {
        let s = parse("The [MASK] sat on [MASK:3] mat.").unwrap();
        assert_eq!(
            s,
            vec![
                Segment::Text("The ".into()),
                Segment::Masks(1),
                Segment::Text(" sat on ".into()),
                Segment::Masks(3),
                Segment::Text(" mat.".into()),
            ]
        );
        assert_eq!(render(&s), "The [MASK] sat on [MASK:3] mat.");
    }

    #[test]
    fn merges_adjacent_masks_and_keeps_lookalikes() {
        assert_eq!(parse("[MASK][MASK:2]").unwrap(), vec![Segment::Masks(3)]);
        assert_eq!(
            parse("[MASKED] x").unwrap(),
            vec![Segment::Text("[MASKED] x".into())]
        );
    }

    #[test]
    fn rejects_bad_counts() {
        assert!(parse("[MASK:0]").is_err());
        assert!(parse("[MASK:x]").is_err());
        assert!(parse("[MASK:3").is_err());
    }
}
