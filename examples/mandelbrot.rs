//! A real CPU-bound program: render the Mandelbrot set into `mandelbrot.png`, row by row in a
//! pool, and print the speed-up over a sequential run (the images must be identical).
//!
//! Run with `cargo run --release --example mandelbrot [-- WIDTH [--progress]]`.

use std::time::Instant;

const MAX_ITER: u32 = 2_000;

/// One row of the image: grey levels by escape time.
#[mp::worker]
fn render_row(y: u32, width: u32, height: u32) -> Vec<u8> {
    let (x0, x1, y0, y1) = (-2.2f64, 1.0f64, -1.2f64, 1.2f64);
    let ci = y0 + (y1 - y0) * f64::from(y) / f64::from(height);
    (0..width)
        .map(|x| {
            let cr = x0 + (x1 - x0) * f64::from(x) / f64::from(width);
            let (mut zr, mut zi, mut i) = (0.0f64, 0.0f64, 0);
            while i < MAX_ITER && zr * zr + zi * zi <= 4.0 {
                (zr, zi) = (zr * zr - zi * zi + cr, 2.0 * zr * zi + ci);
                i += 1;
            }
            if i == MAX_ITER {
                0
            } else {
                (255.0 * (f64::from(i) / 64.0).sqrt().min(1.0)) as u8
            }
        })
        .collect()
}

mp::main! {
    fn main() -> mp::Result<()> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let width: u32 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(900);
        let height = width * 3 / 4;
        let rows = || (0..height).map(|y| (y, width, height));

        let t = Instant::now();
        let sequential: Vec<Vec<u8>> = rows().map(|(y, w, h)| render_row(y, w, h)).collect();
        let seq = t.elapsed();

        let workers = mp::cpu_count();
        let pool = mp::Pool::new(workers)?;
        let t = Instant::now();
        let tasks = if args.iter().any(|a| a == "--progress") { pool.progress() } else { pool.chunksize(4) };
        let parallel: Vec<Vec<u8>> = tasks.chunksize(4).imap(render_row, rows()).collect::<mp::Result<_>>()?;
        let par = t.elapsed();

        assert!(parallel == sequential, "the pool's image differs from the sequential one");
        let pixels: Vec<u8> = parallel.concat();
        std::fs::write("mandelbrot.png", png::grey(width, height, &pixels))
            .map_err(|e| mp::Error::InvalidArgument(format!("cannot write mandelbrot.png: {e}")))?;
        println!(
            "{width}x{height}: sequential {seq:.2?}, pool of {workers} {par:.2?}: speed-up {:.2}x; wrote mandelbrot.png",
            seq.as_secs_f64() / par.as_secs_f64()
        );
        Ok(())
    }
}

/// A minimal PNG encoder (8-bit greyscale, stored deflate blocks): enough to look at the result.
mod png {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    0xEDB8_8320 ^ (crc >> 1)
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }

    /// The PNG file of a `width` x `height` grey image.
    pub(crate) fn grey(width: u32, height: u32, pixels: &[u8]) -> Vec<u8> {
        let mut raw = Vec::with_capacity(pixels.len() + height as usize);
        for row in pixels.chunks(width as usize) {
            raw.push(0); // filter: none
            raw.extend_from_slice(row);
        }
        let mut zlib = vec![0x78, 0x01];
        let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
        for (i, block) in blocks.iter().enumerate() {
            zlib.push(u8::from(i + 1 == blocks.len()));
            let len = block.len() as u16;
            zlib.extend_from_slice(&len.to_le_bytes());
            zlib.extend_from_slice(&(!len).to_le_bytes());
            zlib.extend_from_slice(block);
        }
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in &raw {
            a = (a + u32::from(byte)) % 65_521;
            b = (b + a) % 65_521;
        }
        zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut header = Vec::new();
        header.extend_from_slice(&width.to_be_bytes());
        header.extend_from_slice(&height.to_be_bytes());
        header.extend_from_slice(&[8, 0, 0, 0, 0]);
        chunk(&mut out, b"IHDR", &header);
        chunk(&mut out, b"IDAT", &zlib);
        chunk(&mut out, b"IEND", &[]);
        out
    }
}
