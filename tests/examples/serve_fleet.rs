//! Serve a fleet of test engines on 127.0.0.1 until standard input closes, for
//! comparing workers by hand on the same fleet (see benches/README.md).
//!
//! ```sh
//! cargo run --release -p healthprobe-tests --example serve_fleet -- RECORDS.json 1000 [HANGING]
//! cargo run --release -p healthprobe-tests --example serve_fleet -- RECORDS.json spec 'SPEC;SPEC;…'
//! ```
//!
//! Writes the records file (DESIGN.md's format), prints `ready` on stdout, and
//! stops every engine when standard input reaches its end. With a count, the
//! first HANGING engines never answer and the rest answer 200. With `spec`,
//! each `;`-separated item is one engine: `200`, `503` (any status), `hang`,
//! `close`, `garbage`, or a script such as `500,500,200` (one step per
//! request, the last repeating).

use std::io::{Read, Write};
use std::path::PathBuf;

use healthprobe_tests::{Behaviour, Fleet};

fn step(token: &str) -> Result<Behaviour, String> {
    match token.trim() {
        "hang" => Ok(Behaviour::Hang),
        "close" => Ok(Behaviour::Close),
        "garbage" => Ok(Behaviour::Garbage),
        status => status
            .parse()
            .map(Behaviour::Status)
            .map_err(|_| format!("unknown engine behaviour {status:?}")),
    }
}

fn engine(spec: &str) -> Result<Behaviour, String> {
    let steps = spec.split(',').map(step).collect::<Result<Vec<_>, _>>()?;
    Ok(match <[Behaviour; 1]>::try_from(steps) {
        Ok([single]) => single,
        Err(steps) => Behaviour::Script(steps),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let records = PathBuf::from(args.next().unwrap_or_else(|| "records.json".into()));
    let count_or_spec = args.next().unwrap_or_else(|| "1000".into());
    let behaviours: Vec<Behaviour> = if count_or_spec == "spec" {
        let specs = args
            .next()
            .ok_or("spec needs a list, like '200;503;hang'")?;
        specs.split(';').map(engine).collect::<Result<_, _>>()?
    } else {
        let count: usize = count_or_spec.parse()?;
        let hanging: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(0);
        (0..count)
            .map(|i| {
                if i < hanging {
                    Behaviour::Hang
                } else {
                    Behaviour::Status(200)
                }
            })
            .collect()
    };
    let count = behaviours.len();
    let fleet = Fleet::start(behaviours)?;
    fleet.write_records(&records)?;
    println!("ready {count} engines, records in {}", records.display());
    std::io::stdout().flush()?;
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink)?;
    drop(fleet);
    Ok(())
}
