//! Scratch: greedy generation with the integer reference vs the float model.
fn main() {
    let path = std::env::args().nth(1).expect("path");
    let ids: Vec<u32> = std::env::args().nth(2).expect("ids").split(',').map(|s| s.trim().parse().unwrap()).collect();
    let file = verinfer_vir::gguf::GgufFile::open(&path).unwrap();
    let t = std::time::Instant::now();
    let m = verinfer_vir::IntModel::load(&file).unwrap();
    println!("load {:?} root {}", t.elapsed(), m.root);
    let params = protocol::SamplingParams { max_tokens: 12, temperature_milli: 0, top_p_milli: 1000, seed: 0, choice_index: 0 };
    let t = std::time::Instant::now();
    let (g, tr) = verinfer_vir::interp::generate_committed(&m, &ids, &params, &[2]).unwrap();
    println!("int {:?} {:?} ops {} root {} in {:?}", g.tokens, g.finish_reason, tr.op_count, tr.root, t.elapsed());
    let f = verinfer_vir::float_ref::FloatModel::load(&file).unwrap();
    let t = std::time::Instant::now();
    let (out, _) = f.generate_greedy(&ids, 12, &[2]);
    println!("f32 {out:?} in {:?}", t.elapsed());
}
