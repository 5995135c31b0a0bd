//! The wide-row path: rows grouped by class, each class's rows read whole.
//!
//! The rows of a block (up to [`BLOCK_ROWS`]) are first grouped by class with a
//! stable counting sort (four bytes per row). Each task then takes one class,
//! or a range of at least [`MIN_PIECE_COLUMNS`] of its columns when the class
//! holds enough of the work to hold up a thread, and adds that class's rows in
//! row order into its row of the sums. The sums row stays in the L1/L2 cache
//! while the rows stream in, [`ROW_GROUP`] at a time: each row is read as one
//! run of kilobytes, which the hardware prefetchers follow, and the sums are
//! loaded and stored once per group instead of once per row.

use ndarray::ArrayView2;
use rayon::prelude::*;

use super::SumsPtr;
use crate::real::Real;
use crate::simd::Simd;

/// Rows grouped per block: bounds the row order to 16 MiB.
pub const BLOCK_ROWS: usize = 1 << 22;
/// Tasks per thread a block aims for (rayon balances them).
const PIECES_PER_THREAD: usize = 16;
/// Fewest elements worth a task of their own.
const MIN_PIECE_WORK: usize = 1 << 16;
/// Narrowest column piece: 1,024 float32 are one 4 KiB page of every row.
const MIN_PIECE_COLUMNS: usize = 1024;
/// Rows of a class added per pass over its sums (measured best of 1, 2, 4, 8
/// and 16 at the ImageNet-LT and iNaturalist shapes).
const ROW_GROUP: usize = 8;

/// Rows of one block grouped by class: `order[starts[c]..starts[c + 1]]` are the
/// block's rows of class `c`, in increasing row order (a stable counting sort).
pub(super) struct RowsByClass {
    starts: Vec<usize>,
    order: Vec<u32>,
}

impl RowsByClass {
    /// Group `labels` (each below `n_classes`, at most `u32::MAX` of them).
    pub(super) fn new(labels: &[i64], n_classes: usize) -> RowsByClass {
        assert!(
            labels.len() <= u32::MAX as usize,
            "block too large to index"
        );
        let mut starts = vec![0usize; n_classes + 1];
        for &l in labels {
            starts[l as usize + 1] += 1;
        }
        for c in 0..n_classes {
            starts[c + 1] += starts[c];
        }
        let mut next = starts[..n_classes].to_vec();
        let mut order = vec![0u32; labels.len()];
        for (r, &l) in labels.iter().enumerate() {
            let slot = &mut next[l as usize];
            order[*slot] = r as u32;
            *slot += 1;
        }
        RowsByClass { starts, order }
    }

    /// The rows of `class`, increasing.
    pub(super) fn rows(&self, class: usize) -> &[u32] {
        &self.order[self.starts[class]..self.starts[class + 1]]
    }
}

/// One task: columns `c0..c1` of the rows of one class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Piece {
    pub class: usize,
    pub c0: usize,
    pub c1: usize,
}

/// The tasks of one block: every class with rows, cut into column pieces where
/// it holds more than its share of the work, so that one huge class still keeps
/// every thread busy. The cut does not change a bit of the result (each element
/// still receives its rows in row order).
pub(super) fn pieces(rows: &RowsByClass, d: usize, threads: usize) -> Vec<Piece> {
    let n_classes = rows.starts.len() - 1;
    let total = rows.order.len() * d;
    let target = (total / (PIECES_PER_THREAD * threads.max(1))).max(MIN_PIECE_WORK);
    let most = (d / MIN_PIECE_COLUMNS).max(1);
    let mut out = Vec::with_capacity(n_classes);
    for class in 0..n_classes {
        let k = rows.rows(class).len();
        if k == 0 {
            continue;
        }
        let cuts = (k * d).div_ceil(target).clamp(1, most);
        let width = d.div_ceil(cuts).next_multiple_of(16).min(d);
        let mut c0 = 0;
        while c0 < d {
            let c1 = (c0 + width).min(d);
            out.push(Piece { class, c0, c1 });
            c0 = c1;
        }
    }
    out
}

/// Add columns `c0..c0 + acc.len()` of the rows `rows` of `block` (increasing)
/// into `acc`, one addition at a time per element, in row order.
#[inline(always)]
unsafe fn add_rows_generic<T: Real>(
    block: ArrayView2<T>,
    rows: &[u32],
    acc: &mut [f64],
    c0: usize,
) {
    let (row_stride, col_stride) = (block.strides()[0], block.strides()[1]);
    let base = block.as_ptr().offset(c0 as isize * col_stride);
    let row = |r: u32| base.offset(r as isize * row_stride);
    if col_stride != 1 {
        for &r in rows {
            let row = row(r);
            for (j, a) in acc.iter_mut().enumerate() {
                *a += (*row.offset(j as isize * col_stride)).to_f64();
            }
        }
        return;
    }
    let w = acc.len();
    let mut groups = rows.chunks_exact(ROW_GROUP);
    for group in &mut groups {
        let starts: [*const T; ROW_GROUP] = std::array::from_fn(|i| row(group[i]));
        for j in 0..w {
            let mut a = *acc.get_unchecked(j);
            for p in starts {
                a += (*p.add(j)).to_f64();
            }
            *acc.get_unchecked_mut(j) = a;
        }
    }
    for &r in groups.remainder() {
        let values = std::slice::from_raw_parts(row(r), w);
        for (a, &v) in acc.iter_mut().zip(values) {
            *a += v.to_f64();
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn add_rows_avx512<T: Real>(block: ArrayView2<T>, rows: &[u32], acc: &mut [f64], c0: usize) {
    add_rows_generic(block, rows, acc, c0)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn add_rows_avx2<T: Real>(block: ArrayView2<T>, rows: &[u32], acc: &mut [f64], c0: usize) {
    add_rows_generic(block, rows, acc, c0)
}

/// [`add_rows_generic`] compiled for the vector level `simd` (which the CPU
/// must have). Every level performs the same additions in the same order, so
/// every level gives the same bits.
///
/// # Safety
/// Every entry of `rows` is a row of `block`, and `c0 + acc.len() <= block.ncols()`.
pub(super) unsafe fn add_rows<T: Real>(
    simd: Simd,
    block: ArrayView2<T>,
    rows: &[u32],
    acc: &mut [f64],
    c0: usize,
) {
    match simd {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => add_rows_avx512(block, rows, acc, c0),
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => add_rows_avx2(block, rows, acc, c0),
        _ => add_rows_generic(block, rows, acc, c0),
    }
}

/// Add every row of `features` into `sums` (`n_classes x d`, row-major), in
/// blocks of `block_rows` rows, each block's pieces in parallel.
///
/// # Safety
/// `sums` holds `n_classes x d` float64 that nothing else touches during the
/// call, and every label lies in `[0, n_classes)`.
pub(super) unsafe fn add_by_class<T: Real>(
    simd: Simd,
    features: ArrayView2<T>,
    labels: &[i64],
    sums: SumsPtr,
    n_classes: usize,
    block_rows: usize,
) {
    let (n, d) = features.dim();
    let threads = rayon::current_num_threads();
    let mut block_start = 0;
    while block_start < n {
        let block_end = (block_start + block_rows.max(1)).min(n);
        let block = features.slice(ndarray::s![block_start..block_end, ..]);
        let rows = RowsByClass::new(&labels[block_start..block_end], n_classes);
        pieces(&rows, d, threads).into_par_iter().for_each(|p| {
            // SAFETY: pieces are disjoint (class, columns) ranges of `sums`, every
            // label lies below n_classes (the caller's promise), and p.c1 <= d.
            unsafe { add_rows(simd, block, rows.rows(p.class), sums.piece(d, &p), p.c0) };
        });
        block_start = block_end;
    }
}
