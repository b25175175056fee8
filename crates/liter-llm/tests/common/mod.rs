//! Runs the real `liter-llm` binary as a child process.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_liter-llm");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

/// A command with a clean environment: no inherited LITER_LLM_MASTER_KEY or RUST_LOG.
pub fn cmd(cwd: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(cwd)
        .env_remove("LITER_LLM_MASTER_KEY")
        .env_remove("RUST_LOG");
    c
}

pub fn run(c: &mut Command) -> Output {
    c.stdin(Stdio::null()).output().unwrap()
}

pub struct Running {
    pub child: Child,
    pub port: u16,
    pub stderr_path: PathBuf,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn stderr(&self) -> String {
        let mut s = String::new();
        std::fs::File::open(&self.stderr_path)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawn `liter-llm api ...` and wait until `port` answers readiness.
pub fn spawn_api(cwd: &Path, args: &[&str], envs: &[(&str, &str)], port: u16) -> Running {
    let stderr_path = cwd.join(format!("stderr-{port}.log"));
    let mut c = cmd(cwd);
    c.arg("api").args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    let child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut running = Running {
        child,
        port,
        stderr_path,
    };
    let start = Instant::now();
    loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            panic!("liter-llm exited early with {status}: {}", running.stderr());
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return running;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "not listening on {port}: {}",
            running.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
