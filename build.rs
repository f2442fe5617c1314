//! Embeds every built-in application profile (`src/detect/profiles/*.toml`): adding a
//! profile is adding a file. See src/detect/profile.rs.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new("src/detect/profiles");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|n| n.strip_suffix(".toml").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let mut out =
        String::from("/// Written by build.rs: (name, text) of each built-in profile, by name.\n");
    out.push_str("pub const BUILTIN_PROFILES: &[(&str, &str)] = &[\n");
    for n in &names {
        let path = Path::new(&root).join(dir).join(format!("{n}.toml"));
        println!("cargo:rerun-if-changed={}", path.display());
        let _ = writeln!(
            out,
            "    ({n:?}, include_str!({:?})),",
            path.display().to_string()
        );
    }
    out.push_str("];\n");
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR for build scripts");
    std::fs::write(Path::new(&out_dir).join("profiles.rs"), out)
        .expect("OUT_DIR is writable during the build");
}
