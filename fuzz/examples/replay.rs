//! Replays fuzz inputs: `cargo run -p psession-fuzz --example replay -- FILE...`
//! prints each file's decoded script (with `-v`) and runs it, so a crash
//! the fuzzer found can be read and debugged on stable Rust.

fn main() {
    let mut verbose = false;
    for arg in std::env::args().skip(1) {
        if arg == "-v" {
            verbose = true;
            continue;
        }
        let data = std::fs::read(&arg).unwrap_or_else(|e| panic!("{arg}: {e}"));
        if verbose {
            let script = psession_fuzz::script::Script::decode(&data);
            println!("{arg}: {:#?}", script.setup);
            for (i, op) in script.ops.iter().enumerate() {
                println!("  {i:4}: {op:?}");
            }
        }
        psession_fuzz::run(&data);
        println!("{arg}: ok");
    }
}
