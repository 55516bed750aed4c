//! `--name value` / `--name=value` flags of the test kit's binaries.

use std::process::ExitCode;

/// The flags given, in order, as `(name, value)`; `Err` holds the exit code
/// after `--help` (usage printed, success) or a flag without a value (usage
/// on stderr, 2).
pub fn parse(usage: &str) -> Result<Vec<(String, String)>, ExitCode> {
    parse_from(std::env::args().skip(1), usage)
}

/// [`parse`] over given arguments (for a binary that splits its command
/// line first, e.g. at `--`).
pub fn parse_from(
    args: impl Iterator<Item = String>,
    usage: &str,
) -> Result<Vec<(String, String)>, ExitCode> {
    let mut args = args.peekable();
    let mut out = Vec::new();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        if name == "--help" || name == "-h" {
            println!("{usage}");
            return Err(ExitCode::SUCCESS);
        }
        let Some(value) = inline.or_else(|| args.next()) else {
            eprintln!("{name}: missing value\n{usage}");
            return Err(ExitCode::from(2));
        };
        out.push((name, value));
    }
    Ok(out)
}

/// Prints the refusal of an unknown flag; the exit code to return.
pub fn unknown(name: &str, usage: &str) -> ExitCode {
    eprintln!("unknown argument {name}\n{usage}");
    ExitCode::from(2)
}

/// Parses a flag's number, or prints why not; `Err` is the exit code.
pub fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ExitCode> {
    value.parse().map_err(|_| {
        eprintln!("{name}: not a number: {value}");
        ExitCode::from(2)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings() {
        let args = ["--port", "8", "--email=a@b"].map(String::from);
        let got = parse_from(args.into_iter(), "u").unwrap();
        assert_eq!(
            got,
            vec![
                ("--port".to_string(), "8".to_string()),
                ("--email".to_string(), "a@b".to_string())
            ]
        );
        assert!(parse_from(["--port"].map(String::from).into_iter(), "u").is_err());
    }
}
