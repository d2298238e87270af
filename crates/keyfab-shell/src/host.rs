//! Asking the keyfab that started make to run a command in its own
//! process. While it plans, keyfab listens on a Unix socket and names it to
//! make's environment ([`SOCKET_VAR`], with [`PROGRAM_VAR`] the program it
//! answers for: itself). keyfab-shell sends a plain command for that
//! program there instead of starting it (a keyfab process costs ~3 ms to
//! start, and its generators re-read the tree the parent has in memory);
//! the parent answers with what the process would have printed, or says it
//! does not know the call, and the shell then starts it as usual.
//!
//! The exchange, one command per connection: the request is the argv's
//! words, each followed by a NUL; the writer then shuts its side. The reply
//! is one byte (`0`: not known; `1`: ran), then for a run the exit status
//! (i32, little endian), stdout's length (u32, little endian), stdout, and
//! stderr to the end.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// The environment variable naming the socket.
pub const SOCKET_VAR: &str = "KEYFAB_SHELL_HOST";
/// The environment variable naming the program whose calls go there.
pub const PROGRAM_VAR: &str = "KEYFAB_SHELL_HOST_PROGRAM";

/// What a command the host ran printed, and its exit status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Asks the host at `socket` to run `argv`: `Ok(None)` when it does not
/// know the call.
pub fn ask(socket: &Path, argv: &[String]) -> std::io::Result<Option<Reply>> {
    let mut stream = UnixStream::connect(socket)?;
    stream.write_all(&encode_request(argv)?)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    decode_reply(&reply)
}

/// Serves one connection: reads the request, answers with `run`'s reply.
pub fn serve(
    mut stream: UnixStream,
    run: impl FnOnce(&[String]) -> Option<Reply>,
) -> std::io::Result<()> {
    let mut request = Vec::new();
    stream.read_to_end(&mut request)?;
    let argv = decode_request(&request)?;
    stream.write_all(&encode_reply(run(&argv).as_ref()))
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

fn encode_request(argv: &[String]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    for word in argv {
        if word.contains('\0') {
            return Err(bad("an argument holds a NUL"));
        }
        out.extend_from_slice(word.as_bytes());
        out.push(0);
    }
    Ok(out)
}

fn decode_request(bytes: &[u8]) -> std::io::Result<Vec<String>> {
    let Some(body) = bytes.strip_suffix(b"\0") else {
        return if bytes.is_empty() {
            Ok(Vec::new())
        } else {
            Err(bad("request does not end with a NUL"))
        };
    };
    body.split(|b| *b == 0)
        .map(|w| String::from_utf8(w.to_vec()).map_err(|_| bad("request is not UTF-8")))
        .collect()
}

fn encode_reply(reply: Option<&Reply>) -> Vec<u8> {
    let Some(r) = reply else {
        return vec![0];
    };
    let mut out = vec![1];
    out.extend_from_slice(&r.status.to_le_bytes());
    out.extend_from_slice(&(r.stdout.len() as u32).to_le_bytes());
    out.extend_from_slice(&r.stdout);
    out.extend_from_slice(&r.stderr);
    out
}

fn decode_reply(bytes: &[u8]) -> std::io::Result<Option<Reply>> {
    match bytes.split_first() {
        Some((0, [])) => Ok(None),
        Some((1, rest)) if rest.len() >= 8 => {
            let status = i32::from_le_bytes(rest[..4].try_into().unwrap());
            let len = u32::from_le_bytes(rest[4..8].try_into().unwrap()) as usize;
            let body = &rest[8..];
            if body.len() < len {
                return Err(bad("reply shorter than its stdout"));
            }
            Ok(Some(Reply {
                status,
                stdout: body[..len].to_vec(),
                stderr: body[len..].to_vec(),
            }))
        }
        _ => Err(bad("malformed reply")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_and_its_reply_cross_a_real_socket() {
        let dir = std::env::temp_dir().join(format!("kf-shell-host-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("s");
        let _ = std::fs::remove_file(&socket);
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                let (stream, _) = listener.accept().unwrap();
                serve(stream, |argv| {
                    (argv.first().map(String::as_str) == Some("known")).then(|| Reply {
                        status: 3,
                        stdout: argv[1..].join("|").into_bytes(),
                        stderr: b"warn\n".to_vec(),
                    })
                })
                .unwrap();
            }
        });
        let argv = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            ask(&socket, &argv(&["known", "a b", "", "c"])).unwrap(),
            Some(Reply {
                status: 3,
                stdout: b"a b||c".to_vec(),
                stderr: b"warn\n".to_vec()
            })
        );
        assert_eq!(ask(&socket, &argv(&["other"])).unwrap(), None);
        server.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(encode_request(&argv(&["a\0b"])).is_err());
        assert!(decode_reply(&[1, 0]).is_err());
    }
}
