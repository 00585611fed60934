//! Semi-autoregressive windows: the denoising region is cut into blocks that are finished one after
//! another, each with its share of the steps (LLaDA `generate.py`).

/// One block of the denoising region: positions `start..end`, given `steps` denoising steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub start: usize,
    pub end: usize,
    pub steps: usize,
}

/// Cuts `region_start..canvas_len` into blocks of `block_length` and shares `total_steps` among them.
///
/// For lengths and step counts that divide evenly this is exactly LLaDA's plan. Where they do not
/// (the reference asserts instead), the last block is shorter, the first `total_steps % blocks`
/// blocks get one extra step, and every block gets at least one step.
pub fn plan_blocks(
    region_start: usize,
    canvas_len: usize,
    block_length: usize,
    total_steps: usize,
) -> Vec<Block> {
    let block_length = block_length.max(1);
    let region = canvas_len.saturating_sub(region_start);
    if region == 0 {
        return Vec::new();
    }
    let count = region.div_ceil(block_length);
    let base = total_steps / count;
    let extra = total_steps % count;
    (0..count)
        .map(|b| {
            let start = region_start + b * block_length;
            Block {
                start,
                end: (start + block_length).min(canvas_len),
                steps: (base + usize::from(b < extra)).max(1),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_split_matches_llada() {
        let blocks = plan_blocks(5, 5 + 64, 16, 32);
        assert_eq!(blocks.len(), 4);
        assert_eq!(
            blocks[0],
            Block {
                start: 5,
                end: 21,
                steps: 8
            }
        );
        assert_eq!(
            blocks[3],
            Block {
                start: 53,
                end: 69,
                steps: 8
            }
        );
    }

    #[test]
    fn uneven_lengths_and_steps() {
        let blocks = plan_blocks(0, 40, 16, 7);
        assert_eq!(
            blocks,
            vec![
                Block {
                    start: 0,
                    end: 16,
                    steps: 3
                },
                Block {
                    start: 16,
                    end: 32,
                    steps: 2
                },
                Block {
                    start: 32,
                    end: 40,
                    steps: 2
                },
            ]
        );
    }

    #[test]
    fn too_few_steps_still_gives_each_block_one() {
        let blocks = plan_blocks(0, 64, 8, 3);
        assert_eq!(blocks.len(), 8);
        assert!(blocks.iter().all(|b| b.steps == 1));
    }

    #[test]
    fn block_longer_than_region_is_one_window() {
        assert_eq!(
            plan_blocks(3, 10, 32, 4),
            vec![Block {
                start: 3,
                end: 10,
                steps: 4
            }]
        );
        assert!(plan_blocks(10, 10, 32, 4).is_empty());
    }
}
