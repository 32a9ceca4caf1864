//! `gen::weights::hub` against a stand-in Hub on loopback (`support/http_hub.rs`): downloads land in
//! the `hf-hub` cache layout with the served bytes, cached models need no request at all,
//! offline mode and failures give clear one-line errors, GGUF-only repos give the `.gguf` path.
//!
//! In-process checks pass the settings explicitly (`fetch_with`), so tests can run in parallel;
//! the environment variables (`HF_HOME`, `HF_ENDPOINT`, `HF_HUB_OFFLINE`) are checked on child
//! processes: this test binary re-run on one test, and the `gen` binary.

#[path = "support/http_hub.rs"]
mod http_hub;

use gen::weights::hub::{fetch_with, HubSettings};
use http_hub::{etag_of, noise, FakeHub, FakeRepo, Request};
use predicates::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const SHARDED_SHA: &str = "89abcdef0123456789abcdef0123456789abcdef";
const GGUF_SHA: &str = "fedcba9876543210fedcba9876543210fedcba98";

fn settings(hub_endpoint: &str, home: &Path) -> HubSettings {
    HubSettings {
        endpoint: hub_endpoint.to_string(),
        cache_dir: home.join("hub"),
        offline: false,
        token: None,
        show_progress: false,
        reporter: None,
    }
}

fn offline(mut s: HubSettings) -> HubSettings {
    s.offline = true;
    s
}

/// A safetensors repo with everything gen fetches plus files it must leave alone.
fn tiny_repo() -> FakeRepo {
    let mut weights = b"\x10\x00\x00\x00\x00\x00\x00\x00{\"__metadata__\":{}}".to_vec();
    weights.extend(noise(300_000, 1));
    FakeRepo::new(
        "tiny-org/tiny-model",
        SHA,
        &[
            (
                "config.json",
                br#"{"architectures":["LlamaForCausalLM"],"hidden_size":8}"#.to_vec(),
            ),
            (
                "tokenizer.json",
                br#"{"version":"1.0","model":{"type":"BPE","vocab":{"a":0,"b":1}}}"#.to_vec(),
            ),
            (
                "tokenizer_config.json",
                br#"{"chat_template":"{{ messages }}"}"#.to_vec(),
            ),
            ("generation_config.json", br#"{"eos_token_id":2}"#.to_vec()),
            ("model.safetensors", weights),
            ("README.md", b"# tiny\n".to_vec()),
            (".gitattributes", b"*.safetensors filter=lfs\n".to_vec()),
            ("onnx/model.onnx", noise(1000, 2)),
        ],
    )
}

/// A repo with two shards listed by an index, and a `.bin` copy gen must not fetch.
fn sharded_repo() -> FakeRepo {
    let index = br#"{"metadata":{"total_size":1},"weight_map":{
        "model.embed_tokens.weight":"model-00001-of-00002.safetensors",
        "model.layers.0.mlp.up_proj.weight":"model-00001-of-00002.safetensors",
        "model.norm.weight":"model-00002-of-00002.safetensors",
        "lm_head.weight":"model-00002-of-00002.safetensors"}}"#;
    FakeRepo::new(
        "tiny-org/sharded",
        SHARDED_SHA,
        &[
            ("config.json", br#"{"hidden_size":8}"#.to_vec()),
            ("tokenizer.json", br#"{"model":{"type":"BPE"}}"#.to_vec()),
            ("model.safetensors.index.json", index.to_vec()),
            ("model-00001-of-00002.safetensors", noise(120_000, 3)),
            ("model-00002-of-00002.safetensors", noise(80_000, 4)),
            ("pytorch_model.bin", noise(5000, 5)),
        ],
    )
}

fn gguf_bytes(seed: u64) -> Vec<u8> {
    let mut b = b"GGUF\x03\x00\x00\x00".to_vec();
    b.extend(noise(50_000, seed));
    b
}

fn gguf_repos() -> Vec<FakeRepo> {
    vec![
        FakeRepo::new(
            "tiny-org/tiny-gguf",
            GGUF_SHA,
            &[
                ("README.md", b"quants\n".to_vec()),
                ("tiny-Q8_0.gguf", gguf_bytes(6)),
                ("tiny-Q4_K_M.gguf", gguf_bytes(7)),
                ("tiny-F16.gguf", gguf_bytes(8)),
            ],
        ),
        FakeRepo::new(
            "tiny-org/nested-gguf",
            GGUF_SHA,
            &[("quants/tiny.Q5_K_M.gguf", gguf_bytes(9))],
        ),
        FakeRepo::new(
            "tiny-org/many-gguf",
            GGUF_SHA,
            &[
                ("tiny-IQ2_XS.gguf", gguf_bytes(10)),
                ("tiny-IQ3_M.gguf", gguf_bytes(11)),
            ],
        ),
    ]
}

fn snapshot_of(home: &Path, repo: &str, sha: &str) -> PathBuf {
    home.join("hub")
        .join(format!("models--{}", repo.replace('/', "--")))
        .join("snapshots")
        .join(sha)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The files whose `resolve` URL was requested.
fn resolved_files(requests: &[Request]) -> Vec<String> {
    let mut files: Vec<String> = requests
        .iter()
        .filter_map(|r| {
            let mut parts = r.path.splitn(6, '/');
            let (_, _org, _name, kind, _rev) = (
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
            );
            (kind == Some("resolve")).then(|| parts.next().unwrap_or("").to_string())
        })
        .collect();
    files.sort();
    files.dedup();
    files
}

fn message(result: anyhow::Result<PathBuf>) -> String {
    let err = result.expect_err("the fetch should have failed");
    let text = format!("{err:#}");
    assert!(!text.contains('\n'), "the error should be one line: {text}");
    text
}

#[test]
fn downloads_a_safetensors_repo_then_serves_it_from_the_cache_without_requests() {
    let repo = tiny_repo();
    let hub = FakeHub::start(vec![repo.clone()]);
    let home = tempfile::tempdir().expect("temp dir");
    let s = settings(hub.endpoint(), home.path());

    let path = fetch_with(&s, "tiny-org/tiny-model", "main").expect("first fetch");
    let snapshot = snapshot_of(home.path(), "tiny-org/tiny-model", SHA);
    assert_eq!(path, snapshot);
    let wanted = [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ];
    for name in wanted {
        assert_eq!(
            read(&path.join(name)),
            repo.file(name),
            "{name} differs from what was served"
        );
    }
    for name in ["README.md", ".gitattributes", "onnx/model.onnx", "onnx"] {
        assert!(
            !path.join(name).exists(),
            "{name} should not have been downloaded"
        );
    }
    let repo_dir = home.path().join("hub/models--tiny-org--tiny-model");
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).expect("refs/main"),
        SHA
    );
    // The LFS file is stored under its linked etag, and the snapshot entry points at it.
    let blob = repo_dir
        .join("blobs")
        .join(etag_of(repo.file("model.safetensors")));
    assert_eq!(read(&blob), repo.file("model.safetensors"));
    #[cfg(unix)]
    assert!(std::fs::symlink_metadata(path.join("model.safetensors"))
        .expect("snapshot entry")
        .file_type()
        .is_symlink());

    // What hf-hub asked for: the repo info, then per file a `bytes=0-0` probe and the body.
    let requests = hub.requests();
    assert_eq!(
        requests[0].path,
        "/api/models/tiny-org/tiny-model/revision/main"
    );
    assert_eq!(resolved_files(&requests), wanted.map(String::from).to_vec());
    let probes = requests
        .iter()
        .filter(|r| r.range.as_deref() == Some("bytes=0-0") && r.path.contains("/resolve/"));
    assert_eq!(probes.count(), wanted.len());
    assert!(requests
        .iter()
        .any(|r| r.path == "/cdn/tiny-org/tiny-model/model.safetensors"
            && r.range.as_deref() == Some("bytes=0-")));
    assert!(requests.iter().all(|r| r.authorization.is_none()));

    // Second fetch: everything is cached, so not one request (by branch or by commit).
    let count = hub.request_count();
    assert_eq!(
        fetch_with(&s, "tiny-org/tiny-model", "main").expect("cached fetch"),
        snapshot
    );
    assert_eq!(
        fetch_with(&s, "tiny-org/tiny-model", SHA).expect("cached fetch by commit"),
        snapshot
    );
    assert_eq!(
        fetch_with(&offline(s.clone()), "tiny-org/tiny-model", "main").expect("offline fetch"),
        snapshot
    );
    assert_eq!(
        hub.request_count(),
        count,
        "a cached model must not cause requests"
    );

    // With the server gone it still works, online or offline.
    let endpoint = hub.endpoint().to_string();
    hub.stop();
    assert_eq!(
        fetch_with(
            &settings(&endpoint, home.path()),
            "tiny-org/tiny-model",
            "main"
        )
        .expect("no server"),
        snapshot
    );
    assert_eq!(
        fetch_with(&offline(s), "tiny-org/tiny-model", "main").expect("no server, offline"),
        snapshot
    );
}

#[test]
fn downloads_every_shard_of_the_index_and_only_what_is_missing() {
    let repo = sharded_repo();
    let hub = FakeHub::start(vec![repo.clone()]);
    let home = tempfile::tempdir().expect("temp dir");
    let s = settings(hub.endpoint(), home.path());

    let path = fetch_with(&s, "tiny-org/sharded", "main").expect("fetch");
    assert_eq!(
        path,
        snapshot_of(home.path(), "tiny-org/sharded", SHARDED_SHA)
    );
    let wanted = [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
    ];
    for name in wanted {
        assert_eq!(read(&path.join(name)), repo.file(name), "{name}");
    }
    assert!(!path.join("pytorch_model.bin").exists());
    assert!(
        !path.join("tokenizer_config.json").exists(),
        "optional files the repo lacks are skipped"
    );
    assert_eq!(
        resolved_files(&hub.requests()),
        wanted.map(String::from).to_vec()
    );

    // Lose a shard: offline names it; online fetches only that one again.
    std::fs::remove_file(path.join("model-00002-of-00002.safetensors")).expect("removing a shard");
    let err = message(fetch_with(&offline(s.clone()), "tiny-org/sharded", "main"));
    assert!(
        err.contains("model-00002-of-00002.safetensors") && err.contains("HF_HUB_OFFLINE"),
        "{err}"
    );
    let before = hub.request_count();
    assert_eq!(
        fetch_with(&s, "tiny-org/sharded", "main").expect("refetch"),
        path
    );
    let new_requests = &hub.requests()[before..];
    assert_eq!(
        resolved_files(new_requests),
        vec!["model-00002-of-00002.safetensors".to_string()]
    );
    assert_eq!(
        read(&path.join("model-00002-of-00002.safetensors")),
        repo.file("model-00002-of-00002.safetensors")
    );
}

#[test]
fn resumes_a_partial_download_with_a_range_request() {
    let repo = sharded_repo();
    let hub = FakeHub::start(vec![repo.clone()]);
    let home = tempfile::tempdir().expect("temp dir");
    let shard = repo.file("model-00001-of-00002.safetensors");
    let blobs = home.path().join("hub/models--tiny-org--sharded/blobs");
    std::fs::create_dir_all(&blobs).expect("blobs dir");
    std::fs::write(
        blobs.join(format!("{}.part", etag_of(shard))),
        &shard[..1000],
    )
    .expect("part file");

    let path = fetch_with(
        &settings(hub.endpoint(), home.path()),
        "tiny-org/sharded",
        "main",
    )
    .expect("fetch");
    assert_eq!(read(&path.join("model-00001-of-00002.safetensors")), shard);
    assert!(
        hub.requests()
            .iter()
            .any(|r| r.range.as_deref() == Some("bytes=1000-")),
        "{:?}",
        hub.requests()
    );
}

#[test]
fn gguf_only_repos_give_the_path_of_one_gguf_file() {
    let repos = gguf_repos();
    let hub = FakeHub::start(repos.clone());
    let home = tempfile::tempdir().expect("temp dir");
    let s = settings(hub.endpoint(), home.path());

    // Several quantisations: Q4_K_M is preferred, and only it is downloaded.
    let path = fetch_with(&s, "tiny-org/tiny-gguf", "main").expect("fetch");
    assert_eq!(
        path,
        snapshot_of(home.path(), "tiny-org/tiny-gguf", GGUF_SHA).join("tiny-Q4_K_M.gguf")
    );
    assert_eq!(read(&path), repos[0].file("tiny-Q4_K_M.gguf"));
    assert_eq!(
        resolved_files(&hub.requests()),
        vec!["tiny-Q4_K_M.gguf".to_string()]
    );
    let count = hub.request_count();
    assert_eq!(
        fetch_with(&s, "tiny-org/tiny-gguf", "main").expect("cached"),
        path
    );
    assert_eq!(hub.request_count(), count);

    // A single file, in a subfolder.
    let path = fetch_with(&s, "tiny-org/nested-gguf", "main").expect("nested");
    assert_eq!(
        path,
        snapshot_of(home.path(), "tiny-org/nested-gguf", GGUF_SHA).join("quants/tiny.Q5_K_M.gguf")
    );
    assert_eq!(read(&path), repos[1].file("quants/tiny.Q5_K_M.gguf"));
    assert_eq!(
        fetch_with(&offline(s.clone()), "tiny-org/nested-gguf", "main").expect("cached nested"),
        path
    );

    // No preferred quantisation: the error lists the files and says what to do.
    let count = hub.request_count();
    let err = message(fetch_with(&s, "tiny-org/many-gguf", "main"));
    for needle in [
        "tiny-org/many-gguf",
        "tiny-IQ2_XS.gguf",
        "tiny-IQ3_M.gguf",
        "--model FILE",
    ] {
        assert!(err.contains(needle), "missing `{needle}` in: {err}");
    }
    assert_eq!(
        hub.request_count(),
        count + 1,
        "only the repo info is asked for"
    );
}

#[test]
fn offline_with_an_empty_cache_fails_clearly_without_requests() {
    let hub = FakeHub::start(vec![tiny_repo()]);
    let home = tempfile::tempdir().expect("temp dir");
    let err = message(fetch_with(
        &offline(settings(hub.endpoint(), home.path())),
        "tiny-org/tiny-model",
        "main",
    ));
    for needle in [
        "HF_HUB_OFFLINE",
        "tiny-org/tiny-model@main",
        "refs",
        "unset HF_HUB_OFFLINE",
        "download it first",
    ] {
        assert!(err.contains(needle), "missing `{needle}` in: {err}");
    }
    assert_eq!(hub.request_count(), 0);
}

#[test]
fn unknown_repo_or_revision_fails_clearly() {
    let hub = FakeHub::start(vec![tiny_repo()]);
    let home = tempfile::tempdir().expect("temp dir");
    let s = settings(hub.endpoint(), home.path());

    let err = message(fetch_with(&s, "nobody/nothing", "main"));
    for needle in [
        "nobody/nothing",
        hub.endpoint(),
        "404",
        "check the id, or pass a local folder with --model PATH",
    ] {
        assert!(err.contains(needle), "missing `{needle}` in: {err}");
    }
    let err = message(fetch_with(&s, "tiny-org/tiny-model", "no-such-branch"));
    for needle in [
        "revision `no-such-branch`",
        "tiny-org/tiny-model",
        hub.endpoint(),
        "--model PATH",
    ] {
        assert!(err.contains(needle), "missing `{needle}` in: {err}");
    }
    let err = message(fetch_with(&s, "../etc", "main"));
    assert!(err.contains("invalid Hub model id"), "{err}");
    assert_eq!(hub.request_count(), 2);
}

#[test]
fn unreachable_server_fails_clearly() {
    // A port that was just free: nothing listens there.
    let endpoint = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("address"))
    };
    let home = tempfile::tempdir().expect("temp dir");
    let err = message(fetch_with(
        &settings(&endpoint, home.path()),
        "tiny-org/tiny-model",
        "main",
    ));
    for needle in [
        "cannot reach",
        endpoint.as_str(),
        "tiny-org/tiny-model",
        "--model PATH",
    ] {
        assert!(err.contains(needle), "missing `{needle}` in: {err}");
    }
}

#[test]
fn the_token_is_sent_on_every_request() {
    let hub = FakeHub::start(gguf_repos());
    let home = tempfile::tempdir().expect("temp dir");
    let mut s = settings(hub.endpoint(), home.path());
    s.token = Some("hf_test_token".to_string());
    fetch_with(&s, "tiny-org/nested-gguf", "main").expect("fetch");
    let requests = hub.requests();
    let to_hub = requests.iter().filter(|r| !r.path.starts_with("/cdn/"));
    assert!(to_hub.clone().count() >= 3);
    for r in to_hub {
        assert_eq!(
            r.authorization.as_deref(),
            Some("Bearer hf_test_token"),
            "{r:?}"
        );
    }
}

// ---- Environment variables, on child processes ----

/// Set on the child process: the `org/name@revision` it fetches with `hub::fetch`.
const CHILD_SPEC: &str = "GEN_HUB_TEST_CHILD_SPEC";

/// Variables that would leak the caller's Hub setup (or proxies) into a child.
const SCRUBBED: [&str; 12] = [
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "HF_TOKEN",
    "HF_HUB_DISABLE_PROGRESS_BARS",
    "GEN_MODEL",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
];

#[test]
#[ignore = "helper: run in a child process by environment_variables_reach_fetch"]
fn child_fetch_from_env() {
    let Ok(spec) = std::env::var(CHILD_SPEC) else {
        return;
    };
    let (repo, revision) = spec.split_once('@').unwrap_or((spec.as_str(), "main"));
    // As `gen` itself fetches: the download shown on stderr.
    let reporter = std::sync::Arc::new(gen::output::HubReporter);
    match gen::weights::hub::fetch_reporting(repo, revision, Some(reporter)) {
        Ok(path) => println!("FETCHED={}", path.display()),
        Err(e) => println!("FAILED={e:#}"),
    }
}

/// Runs [`child_fetch_from_env`] in a child with `vars` set; returns (result line, stdout, stderr).
fn fetch_in_child(spec: &str, vars: &[(&str, &str)]) -> (String, String, String) {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args([
        "child_fetch_from_env",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for v in SCRUBBED {
        cmd.env_remove(v);
    }
    cmd.envs(vars.iter().copied()).env(CHILD_SPEC, spec);
    let out = cmd.output().expect("running the child");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    // The harness prints `test child_fetch_from_env ... ` before the result, on the same line.
    let line = stdout
        .lines()
        .find_map(|l| {
            l.find("FETCHED=")
                .or_else(|| l.find("FAILED="))
                .map(|i| l[i..].to_string())
        })
        .unwrap_or_else(|| panic!("no result from the child:\n{stdout}\n{stderr}"));
    (line, stdout, stderr)
}

#[test]
fn environment_variables_reach_fetch() {
    let repo = tiny_repo();
    let hub = FakeHub::start(vec![repo.clone()]);
    let home = tempfile::tempdir().expect("temp dir");
    let home_str = home.path().to_str().expect("utf-8 temp path");
    let endpoint = hub.endpoint().to_string();
    let snapshot = snapshot_of(home.path(), "tiny-org/tiny-model", SHA);
    let fetched = format!("FETCHED={}", snapshot.display());

    // HF_HOME + HF_ENDPOINT: downloads into $HF_HOME/hub from the fake Hub; progress on stderr only.
    let (line, stdout, stderr) = fetch_in_child(
        "tiny-org/tiny-model@main",
        &[("HF_HOME", home_str), ("HF_ENDPOINT", &endpoint)],
    );
    assert_eq!(line, fetched);
    assert_eq!(
        read(&snapshot.join("model.safetensors")),
        repo.file("model.safetensors")
    );
    assert!(
        stderr.contains("downloading tiny-org/tiny-model@main"),
        "{stderr}"
    );
    assert!(!stdout.contains("downloading"), "{stdout}");
    let count = hub.request_count();
    assert!(count > 0);

    // HF_HUB_OFFLINE=1 with the model cached: no request.
    let (line, _, stderr) = fetch_in_child(
        "tiny-org/tiny-model@main",
        &[
            ("HF_HOME", home_str),
            ("HF_ENDPOINT", &endpoint),
            ("HF_HUB_OFFLINE", "1"),
        ],
    );
    assert_eq!(line, fetched);
    assert!(!stderr.contains("downloading"), "{stderr}");
    assert_eq!(hub.request_count(), count);

    // Server stopped, online: the cache is used.
    hub.stop();
    let (line, _, _) = fetch_in_child(
        "tiny-org/tiny-model@main",
        &[("HF_HOME", home_str), ("HF_ENDPOINT", &endpoint)],
    );
    assert_eq!(line, fetched);

    // HF_HUB_OFFLINE=1 with an empty HF_HOME: a clear failure.
    let empty = tempfile::tempdir().expect("temp dir");
    let (line, _, _) = fetch_in_child(
        "tiny-org/tiny-model@main",
        &[
            ("HF_HOME", empty.path().to_str().expect("utf-8")),
            ("HF_ENDPOINT", &endpoint),
            ("HF_HUB_OFFLINE", "1"),
        ],
    );
    assert!(
        line.starts_with("FAILED=")
            && line.contains("HF_HUB_OFFLINE")
            && line.contains("tiny-org/tiny-model"),
        "{line}"
    );
}

/// The `gen` binary, with the Hub settings on its environment.
fn gen_cmd(home: &Path, endpoint: &str) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("gen").expect("the gen binary");
    for v in SCRUBBED {
        cmd.env_remove(v);
    }
    cmd.env("HF_HOME", home)
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1");
    cmd.timeout(std::time::Duration::from_secs(120));
    cmd
}

#[test]
fn the_gen_binary_fetches_hub_ids_and_reports_hub_errors_on_stderr() {
    let repo = tiny_repo();
    let hub = FakeHub::start(vec![repo.clone()]);
    let home = tempfile::tempdir().expect("temp dir");

    // The files served are not a real model, so loading fails after the download; what matters
    // here is that the download happened from $HF_ENDPOINT into $HF_HOME, with nothing on stdout.
    let out = gen_cmd(home.path(), hub.endpoint())
        .args(["tokenize", "--model", "tiny-org/tiny-model", "hi"])
        .output()
        .expect("run gen");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let snapshot = snapshot_of(home.path(), "tiny-org/tiny-model", SHA);
    assert_eq!(
        read(&snapshot.join("tokenizer.json")),
        repo.file("tokenizer.json")
    );
    assert_eq!(
        read(&snapshot.join("model.safetensors")),
        repo.file("model.safetensors")
    );

    let empty = tempfile::tempdir().expect("temp dir");
    gen_cmd(empty.path(), hub.endpoint())
        .env("HF_HUB_OFFLINE", "1")
        .args(["tokenize", "--model", "tiny-org/tiny-model", "hi"])
        .assert()
        .failure()
        .stdout("")
        .stderr(
            predicates::str::contains("HF_HUB_OFFLINE")
                .and(predicates::str::contains("tiny-org/tiny-model")),
        );

    gen_cmd(empty.path(), hub.endpoint())
        .args(["tokenize", "--model", "nobody/nothing", "hi"])
        .assert()
        .failure()
        .stdout("")
        .stderr(
            predicates::str::contains("not found at")
                .and(predicates::str::contains("--model PATH")),
        );
}
