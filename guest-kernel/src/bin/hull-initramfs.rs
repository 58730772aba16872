//! `hull-initramfs`: packs the static hull-agent into an LZ4-compressed initramfs.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Pack hull-agent as /init into a compressed cpio initramfs.
#[derive(Debug, Parser)]
struct Args {
    /// The static hull-agent binary.
    #[arg(long)]
    agent: PathBuf,
    /// Where to write the image.
    #[arg(long)]
    output: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let image = hull_guest_image::initramfs::build(&args.agent)?;
    let tmp = args.output.with_extension("tmp");
    std::fs::write(&tmp, &image).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.output)
        .with_context(|| format!("cannot move the image to {}", args.output.display()))?;
    eprintln!(
        "hull-initramfs: {} ({} KiB)",
        args.output.display(),
        image.len() / 1024
    );
    Ok(())
}
