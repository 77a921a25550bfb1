//! The real basic sandbox image (sandbox/Dockerfile.sandbox.basic, as shipped), built here on
//! stand-ins for its official bases by tests/images/basic.sh, used through stigmer in sandbox
//! mode with a real server and the real engine: every basic tool of the catalog runs and
//! reports at least the version the catalog expects, the tools the catalog says it lacks are
//! not there, and a small real task (git, Python, a local wheel installed with pip --user,
//! node, npm) works, its files owned by the host user.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::engine::*;
use common::*;
use stigmer_engine::tools::{at_least, BASIC_MIN_VERSIONS, CATALOG};

/// A wheel made by hand (a wheel is a zip with its metadata): `hello_stigmer`, one module.
fn write_wheel(dir: &Path) -> std::path::PathBuf {
    let name = "hello_stigmer-1.0-py3-none-any.whl";
    let files = [
        (
            "hello_stigmer.py",
            "def hi():\n    return 'hi from a local wheel'\n",
        ),
        (
            "hello_stigmer-1.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: hello-stigmer\nVersion: 1.0\n",
        ),
        (
            "hello_stigmer-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        ),
    ];
    let record: String = files
        .iter()
        .map(|(p, _)| format!("{p},,\n"))
        .chain(["hello_stigmer-1.0.dist-info/RECORD,,\n".to_string()])
        .collect();
    let path = dir.join(name);
    // Python's own zipfile writes it (the host has Python; the tests' tools need it anyway).
    let script = format!(
        "import zipfile, sys\nz = zipfile.ZipFile(sys.argv[1], 'w')\n{}z.writestr('hello_stigmer-1.0.dist-info/RECORD', {:?})\nz.close()\n",
        files
            .iter()
            .map(|(p, c)| format!("z.writestr({p:?}, {c:?})\n"))
            .collect::<String>(),
        record
    );
    let o = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    path
}

#[test]
fn the_basic_image_has_the_catalogs_tools_and_does_real_work() {
    if !engine_or_skip("the_basic_image_has_the_catalogs_tools_and_does_real_work") {
        return;
    }
    let image = basic_image();
    let env = TestEnv::new();
    let _server = env.start_server_env(&[
        ("STIGMER_EXECUTION_MODE", "sandbox"),
        ("STIGMER_SANDBOX_IMAGE", &image),
    ]);
    let run = |line: &str| {
        let o = env
            .cmd()
            .current_dir(env.path())
            .args(["run", "-c", line])
            .output()
            .unwrap();
        (o.status.code(), stdout(&o), stderr(&o))
    };

    // Every basic tool, at least the version the catalog expects.
    for (name, min) in BASIC_MIN_VERSIONS {
        let (code, out, err) = run(&format!("{name} --version 2>&1"));
        assert_eq!(code, Some(0), "{name}: {out}{err}");
        assert!(
            at_least(&out, min),
            "{name}: wants {min} or newer, reports {out:?}"
        );
    }
    // The tools the catalog says the basic image lacks are not there.
    for e in CATALOG.iter().filter(|e| !e.in_basic) {
        let (code, out, _) = run(&format!("command -v {}", e.binary));
        assert!(
            code != Some(0) && out.is_empty(),
            "{} is in the image ({out}) but not in the catalog's basic column",
            e.name
        );
    }

    // A small real task.
    let wheel = write_wheel(env.path());
    let task = format!(
        "set -e
         git init -q project && cd project
         printf 'print(sum(range(10)))\\n' > sum.py
         python3 sum.py
         git add sum.py && git -c user.name=agent -c user.email=agent@example.invalid commit -qm 'first' && git log --format=%s
         node -e 'console.log([1,2,3].map(x => x * 2).join(\" \"))'
         npm --version >/dev/null && echo npm-ok
         pip install --user --no-index --quiet ../{}
         python3 -c 'import hello_stigmer; print(hello_stigmer.hi())'",
        wheel.file_name().unwrap().to_string_lossy()
    );
    let (code, out, err) = run(&task);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_eq!(
        out, "45\nfirst\n2 4 6\nnpm-ok\nhi from a local wheel\n",
        "{err}"
    );
    // Its files are the host user's.
    let me = unsafe { libc::getuid() };
    for f in ["project", "project/sum.py", "project/.git/HEAD"] {
        let meta = std::fs::metadata(env.path().join(f)).unwrap();
        assert_eq!(meta.uid(), me, "{f} belongs to the host user");
    }
}
