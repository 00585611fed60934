//! Semi-autoregressive windows: the denoising region is cut into blocks that are finished one after
//! another, each with its share of the steps (LLaDA `generate.py`).

/// The most steps a run is given per masked position.
pub const MAX_STEPS_PER_MASK: usize = 64;

/// One block of the denoising region: positions `start..end`, given `steps` denoising steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub start: usize,
    pub end: usize,
    pub steps: usize,
}

/// Cuts `region_start..canvas_len` into blocks of `block_length` and shares `total_steps` among
/// them in proportion to the masked positions each block holds (`is_masked(position)`).
///
/// For LLaDA's case (every block fully masked, lengths and steps dividing evenly) this is exactly
/// `generate.py`'s plan: `steps / blocks` each. Otherwise (the reference asserts instead) the
/// last block is shorter, leftover steps go to the blocks with the largest fractional share
/// (the earliest on ties), a block with masks gets at least one step, and a block without masks
/// (text between infill spans) gets none.
pub fn plan_blocks(
    region_start: usize,
    canvas_len: usize,
    block_length: usize,
    total_steps: usize,
    is_masked: impl Fn(usize) -> bool,
) -> Vec<Block> {
    let block_length = block_length.max(1);
    let region = canvas_len.saturating_sub(region_start);
    let count = region.div_ceil(block_length);
    let bounds: Vec<(usize, usize)> = (0..count)
        .map(|b| {
            let start = region_start + b * block_length;
            (start, start.saturating_add(block_length).min(canvas_len))
        })
        .collect();
    let masks: Vec<usize> = bounds
        .iter()
        .map(|&(start, end)| (start..end).filter(|&p| is_masked(p)).count())
        .collect();
    let total_masks: usize = masks.iter().sum();
    if total_masks == 0 {
        return Vec::new();
    }
    // Past this many steps per mask every further step commits nothing (some schedules, like
    // Dream's timesteps, do use a few empty steps, so the cap is generous); a huge budget would
    // otherwise step on for ever.
    let total_steps = total_steps.min(total_masks.saturating_mul(MAX_STEPS_PER_MASK));
    // Largest-remainder apportionment of the steps.
    let shares: Vec<f64> = masks
        .iter()
        .map(|&m| total_steps as f64 * m as f64 / total_masks as f64)
        .collect();
    let mut steps: Vec<usize> = shares.iter().map(|s| s.floor() as usize).collect();
    let assigned = steps.iter().fold(0usize, |a, &s| a.saturating_add(s));
    let mut leftover = total_steps.saturating_sub(assigned);
    let mut order: Vec<usize> = (0..count).collect();
    order.sort_by(|&a, &b| {
        let fa = shares[a] - shares[a].floor();
        let fb = shares[b] - shares[b].floor();
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    for &b in &order {
        if leftover == 0 {
            break;
        }
        if masks[b] > 0 {
            steps[b] += 1;
            leftover -= 1;
        }
    }
    bounds
        .into_iter()
        .zip(masks.iter().zip(steps))
        .map(|((start, end), (&m, s))| Block {
            start,
            end,
            steps: if m == 0 { 0 } else { s.max(1) },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(_: usize) -> bool {
        true
    }

    #[test]
    fn even_split_matches_llada() {
        let blocks = plan_blocks(5, 5 + 64, 16, 32, all);
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
        // Masks 16, 16, 8 share 7 steps as 2.8, 2.8, 1.4: floors 2, 2, 1, and the two leftover
        // steps go to the largest fractions.
        let steps: Vec<usize> = plan_blocks(0, 40, 16, 7, all)
            .iter()
            .map(|b| b.steps)
            .collect();
        assert_eq!(steps, vec![3, 3, 1]);
        assert_eq!(plan_blocks(0, 40, 16, 7, all)[2].end, 40);
        // Equal blocks with a remainder: the first blocks get the extra steps, as in LLaDA.
        let steps: Vec<usize> = plan_blocks(0, 48, 16, 8, all)
            .iter()
            .map(|b| b.steps)
            .collect();
        assert_eq!(steps, vec![3, 3, 2]);
    }

    #[test]
    fn steps_follow_the_masks_and_text_blocks_get_none() {
        // Block 0 holds 2 masks, block 1 only text, block 2 holds 6 masks: 8 steps -> 2, 0, 6.
        let masked = |p: usize| !(2..16).contains(&p);
        let steps: Vec<usize> = plan_blocks(0, 22, 8, 8, masked)
            .iter()
            .map(|b| b.steps)
            .collect();
        assert_eq!(steps, vec![2, 0, 6]);
    }

    #[test]
    fn too_few_steps_still_gives_each_block_one() {
        let blocks = plan_blocks(0, 64, 8, 3, all);
        assert_eq!(blocks.len(), 8);
        assert!(blocks.iter().all(|b| b.steps == 1));
    }

    #[test]
    fn block_longer_than_region_is_one_window() {
        assert_eq!(
            plan_blocks(3, 10, 32, 4, all),
            vec![Block {
                start: 3,
                end: 10,
                steps: 4
            }]
        );
        assert!(plan_blocks(10, 10, 32, 4, all).is_empty());
    }
}
