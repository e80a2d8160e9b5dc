//! A store's per-channel pixel statistics, accumulated image by image while it is written
//! (`fewshot::data::store::StoreWriter`): the sum and the sum of squares of each channel's 8-bit
//! values, exact in integers, for the mean and standard deviation in the store's header.

/// Adds the interleaved pixels (`…RGBRGB…` for `sums.len()` = 3 channels, one value per pixel for 1)
/// to each channel's running sum and sum of squares.
pub fn add_channel_sums(pixels: &[u8], sums: &mut [u64], squares: &mut [u64]) {
    let c = sums.len();
    assert_eq!(squares.len(), c, "one sum of squares per channel");
    assert!(
        c > 0 && pixels.len().is_multiple_of(c),
        "{} values are not whole pixels of {c} channels",
        pixels.len()
    );
    match c {
        1 => add::<1>(pixels, sums, squares),
        3 => add::<3>(pixels, sums, squares),
        _ => {
            for pixel in pixels.chunks_exact(c) {
                for ((s, q), &v) in sums.iter_mut().zip(squares.iter_mut()).zip(pixel) {
                    *s += v as u64;
                    *q += (v as u64) * (v as u64);
                }
            }
        }
    }
}

/// [`add_channel_sums`] for `C` channels known when compiling (the sums kept in registers).
fn add<const C: usize>(pixels: &[u8], sums: &mut [u64], squares: &mut [u64]) {
    let (mut s, mut q) = ([0u64; C], [0u64; C]);
    for pixel in pixels.chunks_exact(C) {
        for k in 0..C {
            let v = pixel[k] as u64;
            s[k] += v;
            q[k] += v * v;
        }
    }
    for k in 0..C {
        sums[k] += s[k];
        squares[k] += q[k];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_each_channel_of_interleaved_pixels() {
        let (mut s, mut q) = (vec![1u64, 0, 0], vec![0u64; 3]);
        add_channel_sums(&[1, 2, 3, 10, 20, 255], &mut s, &mut q);
        assert_eq!(s, [12, 22, 258]);
        assert_eq!(q, [101, 404, 9 + 255 * 255]);
        let (mut s, mut q) = (vec![0u64], vec![0u64]);
        add_channel_sums(&[3, 4], &mut s, &mut q);
        assert_eq!((s[0], q[0]), (7, 25));
        let (mut s, mut q) = (vec![0u64; 2], vec![0u64; 2]);
        add_channel_sums(&[3, 4, 5, 6], &mut s, &mut q);
        assert_eq!((s, q), (vec![8, 10], vec![34, 52]));
    }
}
