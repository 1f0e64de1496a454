//! Scratch: activation magnitudes of the float model (used to pick fixed-point formats).
fn main() {
    let path = std::env::args().nth(1).expect("path");
    let file = verinfer_vir::gguf::GgufFile::open(&path).unwrap();
    let m = verinfer_vir::float_ref::FloatModel::load(&file).unwrap();
    println!("{:?}", m.config);
    let prompt: Vec<u32> = (1000..1030).collect();
    let t = std::time::Instant::now();
    let (out, s) = m.generate_greedy(&prompt, 10, &[2]);
    println!("{out:?} {:?} {:?}", s.stats, t.elapsed());
    for name in [
        "blk.0.attn_norm.weight",
        "blk.5.ffn_norm.weight",
        "output_norm.weight",
        "blk.29.attn_norm.weight",
    ] {
        let v = verinfer_vir::weights::vector_f32(&file, name, m.config.d_model).unwrap();
        println!("{name} max {}", v.iter().fold(0f32, |a, b| a.max(b.abs())));
    }
}
