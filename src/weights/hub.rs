//! Hugging Face Hub downloads: turns `org/name` at a revision into local files, through the
//! `hf-hub` crate's blocking (`ureq`) client and its cache layout
//! (`<cache>/models--org--name/{refs,blobs,snapshots}`), the same layout the Python
//! `huggingface_hub` library uses, so both share downloads.
//!
//! The cache is looked at first: when the revision's snapshot already holds everything a model
//! needs, no request is made at all. Otherwise the repo's file list is fetched
//! (`GET {endpoint}/api/models/{repo}/revision/{revision}`) and only the missing files are
//! downloaded (`GET {endpoint}/{repo}/resolve/{revision}/{file}`, first with `Range: bytes=0-0`
//! to read the commit, etag and size, then the body), with a progress bar on stderr.
//!
//! Settings come from the environment, as with the Python library (see [`HubSettings::from_env`]):
//! `HF_HOME`, `HF_HUB_CACHE`, `HF_ENDPOINT`, `HF_HUB_OFFLINE`, `HF_TOKEN` and
//! `HF_HUB_DISABLE_PROGRESS_BARS`.
//!
//! Which files are fetched:
//! - safetensors repos (`model.safetensors.index.json` or `model.safetensors` or a single
//!   top-level `*.safetensors` file): `config.json` and `tokenizer.json` (both required),
//!   `tokenizer_config.json` and `generation_config.json` when the repo has them, and the weights
//!   (the index and every shard it lists). The snapshot folder is returned.
//! - repos without safetensors weights but with `.gguf` files: one `.gguf` file, whose path is
//!   returned. With several, see [`pick_gguf`] for the rule.
//!
//! A branch such as `main` is resolved to a commit once, on the first download; later runs use
//! that cached commit without asking the server whether the branch has moved. Pass the new commit
//! as `org/name@<sha>`, or delete `refs/<branch>` in the cache, to pick up a newer one.

use anyhow::{anyhow, bail, Context, Result};
use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::api::Progress;
use hf_hub::{Cache, Repo, RepoType};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The public Hugging Face Hub, used when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Quantisations preferred, in order, when a GGUF-only repo holds several `.gguf` files.
pub const GGUF_PREFERENCE: [&str; 2] = ["Q4_K_M", "Q8_0"];

/// Files a safetensors model folder must have besides its weights.
const REQUIRED_FILES: [&str; 2] = ["config.json", "tokenizer.json"];
/// Files fetched when the repo has them.
const OPTIONAL_FILES: [&str; 2] = ["tokenizer_config.json", "generation_config.json"];
const INDEX_FILE: &str = "model.safetensors.index.json";
const SINGLE_FILE: &str = "model.safetensors";
/// What the user can do instead when the Hub cannot give us the model.
const LOCAL_HINT: &str = "check the id, or pass a local folder with --model PATH";

/// Where and how to reach the Hub, and where its files are cached.
#[derive(Clone)]
pub struct HubSettings {
    /// Server URL without a trailing `/`, e.g. `https://huggingface.co`.
    pub endpoint: String,
    /// The hub cache folder, the one holding `models--org--name` folders (`$HF_HOME/hub`).
    pub cache_dir: PathBuf,
    /// When true no request is made at all: only cached files are used.
    pub offline: bool,
    /// Access token sent as `Authorization: Bearer …` (private and gated repos).
    pub token: Option<String>,
    /// Whether to show download progress on stderr.
    pub show_progress: bool,
    /// Who shows it (`None`: nobody). This module never writes to the terminal itself.
    pub reporter: Option<Arc<dyn Reporter>>,
}

/// Where a download says what it does: a line when it starts and a progress display per file.
pub trait Reporter: Send + Sync {
    /// Says, once per fetch, what is being downloaded from where.
    fn note(&self, msg: &str) -> Result<()>;
    /// The progress display of one file.
    fn progress(&self, file: &str) -> Box<dyn Progress>;
}

/// A boxed [`Progress`], as `hf-hub` takes a value of a concrete type.
struct Boxed(Box<dyn Progress>);

impl Progress for Boxed {
    fn init(&mut self, size: usize, filename: &str) {
        self.0.init(size, filename);
    }

    fn update(&mut self, size: usize) {
        self.0.update(size);
    }

    fn finish(&mut self) {
        self.0.finish();
    }
}

/// No progress display.
struct Quiet;

impl Progress for Quiet {
    fn init(&mut self, _size: usize, _filename: &str) {}
    fn update(&mut self, _size: usize) {}
    fn finish(&mut self) {}
}

impl std::fmt::Debug for HubSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSettings")
            .field("endpoint", &self.endpoint)
            .field("cache_dir", &self.cache_dir)
            .field("offline", &self.offline)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("show_progress", &self.show_progress)
            .finish()
    }
}

impl HubSettings {
    /// Reads the settings from the process environment, like the Python `huggingface_hub`:
    /// - `HF_HUB_CACHE`: the cache folder; else `$HF_HOME/hub`, where `HF_HOME` defaults to
    ///   `$XDG_CACHE_HOME/huggingface`, then `~/.cache/huggingface`;
    /// - `HF_ENDPOINT`: the server URL (default [`DEFAULT_ENDPOINT`]);
    /// - `HF_HUB_OFFLINE`: `1`/`true`/`yes`/`on` forbids any network access;
    /// - `HF_TOKEN`: the access token, else the content of `$HF_HOME/token` if that file exists;
    /// - `HF_HUB_DISABLE_PROGRESS_BARS`: `1`/`true`/… hides the progress output.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Like [`HubSettings::from_env`], with the variables read through `var` (for tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let non_empty = |name: &str| {
            var(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let hf_home = match non_empty("HF_HOME") {
            Some(home) => PathBuf::from(home),
            None => match non_empty("XDG_CACHE_HOME") {
                Some(xdg) => PathBuf::from(xdg).join("huggingface"),
                None => {
                    let home = non_empty("HOME").or_else(|| non_empty("USERPROFILE")).context(
                        "cannot locate the Hugging Face cache: HOME is not set; set HF_HOME to a folder for it",
                    )?;
                    PathBuf::from(home).join(".cache").join("huggingface")
                }
            },
        };
        let cache_dir = non_empty("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let endpoint = non_empty("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let token = non_empty("HF_TOKEN").or_else(|| {
            std::fs::read_to_string(hf_home.join("token"))
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });
        Ok(Self {
            endpoint,
            cache_dir,
            offline: var("HF_HUB_OFFLINE").is_some_and(|v| is_true(&v)),
            token,
            show_progress: !var("HF_HUB_DISABLE_PROGRESS_BARS").is_some_and(|v| is_true(&v)),
            reporter: None,
        })
    }
}

/// The Python library's reading of boolean variables.
fn is_true(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_uppercase().as_str(),
        "1" | "ON" | "YES" | "TRUE"
    )
}

/// Resolves a Hugging Face Hub model repo at a revision to local files, downloading what is
/// missing, with the settings of [`HubSettings::from_env`].
///
/// Returns the local path to load: the snapshot folder (holding `config.json`, `tokenizer.json`,
/// `tokenizer_config.json` and `generation_config.json` when present, and `model.safetensors` or
/// the index and all shards it lists) for safetensors repos, or the path of the `.gguf` file for
/// repos that only hold GGUF weights (picked by [`pick_gguf`] when there are several).
pub fn fetch(repo: &str, revision: &str) -> Result<PathBuf> {
    fetch_reporting(repo, revision, None)
}

/// [`fetch`], with `reporter` showing what is downloaded.
pub fn fetch_reporting(
    repo: &str,
    revision: &str,
    reporter: Option<Arc<dyn Reporter>>,
) -> Result<PathBuf> {
    let settings = HubSettings {
        reporter,
        ..HubSettings::from_env()?
    };
    fetch_with(&settings, repo, revision)
}

/// [`fetch`] with explicit settings: uses the cache alone when it holds everything, and
/// otherwise (unless `settings.offline`) downloads the missing files.
pub fn fetch_with(settings: &HubSettings, repo: &str, revision: &str) -> Result<PathBuf> {
    let revision = if revision.is_empty() {
        "main"
    } else {
        revision
    };
    check_repo_id(repo)?;
    if !is_safe_relative(revision) {
        bail!("invalid revision `{revision}` for {repo}: expected a branch, tag or commit such as `main`");
    }
    let hub_repo = Repo::with_revision(repo.to_string(), RepoType::Model, revision.to_string());
    let repo_dir = settings.cache_dir.join(hub_repo.folder_name());

    let missing = match cached(&repo_dir, revision) {
        Cached::Complete(path) => return Ok(path),
        Cached::Missing(what) => what,
    };
    if settings.offline {
        bail!(
            "HF_HUB_OFFLINE is set and {repo}@{revision} is not fully in the cache ({missing}); \
             unset HF_HUB_OFFLINE to download it, or download it first"
        );
    }
    download(settings, &hub_repo, &repo_dir)
}

/// What the cache holds for a repo at a revision.
enum Cached {
    /// The path to return: everything needed is there.
    Complete(PathBuf),
    /// Something is missing, said in words naming the file.
    Missing(String),
}

/// Looks for a complete snapshot of `revision` in `repo_dir` (`<cache>/models--org--name`),
/// without any network access.
fn cached(repo_dir: &Path, revision: &str) -> Cached {
    let snapshots = repo_dir.join("snapshots");
    let commit = if is_commit_hash(revision) && snapshots.join(revision).is_dir() {
        revision.to_string()
    } else {
        let ref_path = repo_dir.join("refs").join(revision);
        match std::fs::read_to_string(&ref_path) {
            Ok(c) if is_safe_relative(c.trim()) && !c.trim().contains('/') => c.trim().to_string(),
            _ => return Cached::Missing(format!("{} is missing", ref_path.display())),
        }
    };
    let snapshot = snapshots.join(&commit);
    let files = match list_files(&snapshot) {
        Ok(files) => files,
        Err(_) => return Cached::Missing(format!("{} is missing", snapshot.display())),
    };
    let missing =
        |name: &str| Cached::Missing(format!("{} is missing", snapshot.join(name).display()));
    match choose_layout(&files) {
        Ok(Layout::Gguf(name)) => Cached::Complete(snapshot.join(name)),
        Ok(layout) => {
            if let Some(name) = REQUIRED_FILES.iter().find(|f| !snapshot.join(f).is_file()) {
                return missing(name);
            }
            if let Layout::Sharded = layout {
                match read_shard_list(&snapshot.join(INDEX_FILE)) {
                    Ok(shards) => {
                        if let Some(name) = shards.iter().find(|s| !snapshot.join(s).is_file()) {
                            return missing(name);
                        }
                    }
                    Err(e) => return Cached::Missing(format!("{e:#}")),
                }
            }
            Cached::Complete(snapshot)
        }
        Err(_) if files.iter().any(|f| f == "config.json") => missing(SINGLE_FILE),
        Err(e) => Cached::Missing(format!(
            "{} holds no complete model: {e}",
            snapshot.display()
        )),
    }
}

/// Which weights a repo (or a cached snapshot) holds, from its list of files.
#[derive(Debug, PartialEq)]
enum Layout {
    /// `model.safetensors.index.json` and the shards it lists.
    Sharded,
    /// One safetensors file.
    Single(String),
    /// A GGUF file.
    Gguf(String),
}

/// Picks the weights among `files` (paths relative to the repo root, `/`-separated):
/// safetensors first (index, then `model.safetensors`, then a lone top-level `*.safetensors`),
/// else a `.gguf` file chosen by [`pick_gguf`].
fn choose_layout(files: &[String]) -> std::result::Result<Layout, String> {
    if files.iter().any(|f| f == INDEX_FILE) {
        return Ok(Layout::Sharded);
    }
    if files.iter().any(|f| f == SINGLE_FILE) {
        return Ok(Layout::Single(SINGLE_FILE.to_string()));
    }
    let top_level: Vec<&String> = files
        .iter()
        .filter(|f| !f.contains('/') && has_extension(f, "safetensors"))
        .collect();
    match top_level.as_slice() {
        [one] => return Ok(Layout::Single((*one).clone())),
        [] => {}
        several => {
            return Err(format!(
                "several .safetensors files but no {INDEX_FILE} to say which belong together: {}",
                list_names(several.iter().map(|s| s.as_str()))
            ))
        }
    }
    let ggufs: Vec<&str> = files
        .iter()
        .filter(|f| has_extension(f, "gguf"))
        .map(String::as_str)
        .collect();
    if ggufs.is_empty() {
        return Err(format!(
            "no weights gen can load (no {SINGLE_FILE}, {INDEX_FILE} or .gguf file; files: {})",
            list_names(files.iter().map(String::as_str))
        ));
    }
    pick_gguf(&ggufs).map(|name| Layout::Gguf(name.to_string()))
}

/// The rule for repos that hold several GGUF files: vision projectors (`mmproj`) and split files
/// (`…-00001-of-00003.gguf`, which gen cannot load) are set aside; if one file is left it is the
/// one; otherwise the first quantisation of [`GGUF_PREFERENCE`] (`Q4_K_M`, then `Q8_0`) that
/// names exactly one file (as a whole part of its name, split at characters other than letters,
/// digits and `_`, in any case) wins.
/// Otherwise the error lists the files and asks to download the one wanted and pass it with
/// `--model FILE`.
pub fn pick_gguf<'a>(files: &[&'a str]) -> std::result::Result<&'a str, String> {
    let candidates: Vec<&str> = files
        .iter()
        .copied()
        .filter(|f| {
            has_extension(f, "gguf")
                && !f.to_ascii_lowercase().contains("mmproj")
                && !is_split_gguf(f)
        })
        .collect();
    if let [one] = candidates.as_slice() {
        return Ok(one);
    }
    if candidates.is_empty() {
        return Err(format!(
            "only split or projector .gguf files, which gen cannot load: {}",
            list_names(files.iter().copied())
        ));
    }
    for quant in GGUF_PREFERENCE {
        let matching: Vec<&str> = candidates
            .iter()
            .copied()
            .filter(|f| names_quant(f, quant))
            .collect();
        if let [one] = matching.as_slice() {
            return Ok(one);
        }
    }
    Err(format!(
        "{} .gguf files and no single {} among them: {}; download the one you want and pass it with --model FILE",
        candidates.len(),
        GGUF_PREFERENCE.join(" or "),
        list_names(candidates.iter().copied())
    ))
}

/// Whether `file`'s name has `quant` (e.g. `Q4_K_M`) as one of its parts.
fn names_quant(file: &str, quant: &str) -> bool {
    let stem = file
        .get(..file.len().saturating_sub(".gguf".len()))
        .unwrap_or(file);
    stem.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|part| part.eq_ignore_ascii_case(quant))
}

/// `name-00001-of-00003.gguf`.
fn is_split_gguf(file: &str) -> bool {
    let stem = file
        .get(..file.len().saturating_sub(".gguf".len()))
        .unwrap_or(file);
    let parts: Vec<&str> = stem.rsplitn(4, '-').collect();
    matches!(parts.as_slice(), [total, "of", part, _]
        if !total.is_empty() && !part.is_empty()
            && total.chars().all(|c| c.is_ascii_digit()) && part.chars().all(|c| c.is_ascii_digit()))
}

fn has_extension(file: &str, ext: &str) -> bool {
    file.rsplit_once('.')
        .is_some_and(|(stem, e)| !stem.is_empty() && e.eq_ignore_ascii_case(ext))
}

/// A short, one-line list of file names.
fn list_names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    const SHOWN: usize = 12;
    let names: Vec<&str> = names.collect();
    let mut out = names
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        out.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    if out.is_empty() {
        out.push_str("none");
    }
    out
}

/// The distinct shard files listed in a `model.safetensors.index.json`, sorted.
pub(crate) fn read_shard_list(index: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(index).with_context(|| format!("reading {}", index.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", index.display()))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .with_context(|| format!("{} has no `weight_map` object", index.display()))?;
    let mut shards: Vec<String> = map
        .values()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect();
    shards.sort();
    shards.dedup();
    if shards.is_empty() {
        bail!("{} lists no shard files", index.display());
    }
    if let Some(bad) = shards.iter().find(|s| !is_safe_relative(s)) {
        bail!("{} lists an invalid shard path `{bad}`", index.display());
    }
    Ok(shards)
}

/// The files under `dir` (following the cache's symlinks; dangling ones are left out), as
/// `/`-separated paths relative to `dir`.
fn list_files(dir: &Path) -> std::io::Result<Vec<String>> {
    fn walk(dir: &Path, prefix: &str, depth: usize, out: &mut Vec<String>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            match std::fs::metadata(entry.path()) {
                Ok(m) if m.is_file() => out.push(rel),
                Ok(m) if m.is_dir() && depth < 4 => walk(&entry.path(), &rel, depth + 1, out)?,
                _ => {}
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, "", 0, &mut out)?;
    out.sort();
    Ok(out)
}

/// Asks the server for the file list and downloads what the snapshot lacks.
fn download(settings: &HubSettings, hub_repo: &Repo, repo_dir: &Path) -> Result<PathBuf> {
    let repo = hub_repo.url();
    let revision = hub_repo.revision().to_string();
    let endpoint = &settings.endpoint;
    let api = ApiBuilder::from_cache(Cache::new(settings.cache_dir.clone()))
        .with_endpoint(endpoint.clone())
        .with_token(settings.token.clone())
        .with_progress(false)
        .with_retries(2)
        .build()
        .map_err(|e| anyhow!("setting up the HTTP client for {endpoint}: {e}"))?;
    let api_repo = api.repo(hub_repo.clone());

    let info = api_repo
        .info()
        .map_err(|e| request_error(e, settings, hub_repo, None))?;
    let commit = info.sha.trim().to_string();
    if !is_safe_relative(&commit) || commit.contains('/') {
        bail!("{endpoint} answered an invalid commit id `{commit}` for {repo}@{revision}");
    }
    let listed: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
    let layout = choose_layout(&listed).map_err(|e| {
        let hint = if e.contains("--model") {
            ""
        } else {
            "; pass a local folder or file with --model PATH"
        };
        anyhow!("{repo}@{revision} at {endpoint} has {e}{hint}")
    })?;

    let snapshot = repo_dir.join("snapshots").join(&commit);
    let mut fetcher = Fetcher {
        settings,
        hub_repo,
        api_repo: &api_repo,
        snapshot: &snapshot,
        commit: &commit,
        announced: false,
    };
    let result = match &layout {
        Layout::Gguf(name) => fetcher.get(name)?,
        Layout::Single(_) | Layout::Sharded => {
            for name in REQUIRED_FILES {
                if !listed.iter().any(|f| f == name) {
                    bail!(
                        "{repo}@{revision} at {endpoint} has safetensors weights but no {name}, which gen needs; \
                         pass a local folder with --model PATH"
                    );
                }
            }
            let mut names: Vec<String> = REQUIRED_FILES.iter().map(|s| s.to_string()).collect();
            names.extend(
                OPTIONAL_FILES
                    .iter()
                    .filter(|f| listed.iter().any(|l| l == *f))
                    .map(|s| s.to_string()),
            );
            match &layout {
                Layout::Single(name) => names.push(name.clone()),
                _ => names.push(INDEX_FILE.to_string()),
            }
            for name in &names {
                fetcher.get(name)?;
            }
            if let Layout::Sharded = layout {
                let shards = read_shard_list(&snapshot.join(INDEX_FILE))?;
                if let Some(absent) = shards.iter().find(|s| !listed.contains(s)) {
                    bail!("{INDEX_FILE} of {repo}@{revision} lists shard {absent}, which the repo does not have");
                }
                for shard in &shards {
                    fetcher.get(shard)?;
                }
            }
            snapshot.clone()
        }
    };
    if !is_commit_hash(&revision) {
        Cache::new(settings.cache_dir.clone())
            .repo(hub_repo.clone())
            .create_ref(&commit)
            .with_context(|| {
                format!(
                    "recording {repo}@{revision} = {commit} in {}",
                    repo_dir.display()
                )
            })?;
    }
    Ok(result)
}

/// Downloads files of one repo into one snapshot, skipping those already there.
struct Fetcher<'a> {
    settings: &'a HubSettings,
    hub_repo: &'a Repo,
    api_repo: &'a ApiRepo,
    snapshot: &'a Path,
    commit: &'a str,
    /// Whether the "downloading …" line was printed.
    announced: bool,
}

impl Fetcher<'_> {
    /// Says on stderr, once, that files are being downloaded.
    fn announce(&mut self) -> Result<()> {
        let Some(reporter) = self.settings.reporter.as_ref() else {
            return Ok(());
        };
        if self.settings.show_progress && !self.announced {
            self.announced = true;
            reporter.note(&format!(
                "downloading {}@{} from {} into {}",
                self.hub_repo.url(),
                self.hub_repo.revision(),
                self.settings.endpoint,
                self.settings.cache_dir.display()
            ))?;
        }
        Ok(())
    }

    /// The local path of `name`, downloaded unless the snapshot has it.
    fn get(&mut self, name: &str) -> Result<PathBuf> {
        let (repo, revision, endpoint) = (
            self.hub_repo.url(),
            self.hub_repo.revision(),
            &self.settings.endpoint,
        );
        if !is_safe_relative(name) {
            bail!("{endpoint} lists an invalid file name `{name}` in {repo}@{revision}");
        }
        let local = self.snapshot.join(name);
        if local.is_file() {
            return Ok(local);
        }
        self.announce()?;
        let bar = match &self.settings.reporter {
            Some(r) if self.settings.show_progress => Boxed(r.progress(name)),
            _ => Boxed(Box::new(Quiet)),
        };
        let path = self
            .api_repo
            .download_with_progress(name, bar)
            .map_err(|e| request_error(e, self.settings, self.hub_repo, Some(name)))?;
        if path != local {
            bail!(
                "{repo}@{revision} changed on {endpoint} while downloading ({name} came from another commit than {}); run again",
                self.commit
            );
        }
        Ok(path)
    }
}

/// Turns an `hf-hub` failure into one clear line naming the repo, the endpoint and the fix.
fn request_error(
    err: ApiError,
    settings: &HubSettings,
    hub_repo: &Repo,
    file: Option<&str>,
) -> anyhow::Error {
    let (repo, revision, endpoint) = (hub_repo.url(), hub_repo.revision(), &settings.endpoint);
    let what = match file {
        Some(f) => format!("{f} of {repo}@{revision}"),
        None => format!("{repo}@{revision}"),
    };
    let ApiError::RequestError(e) = err else {
        return anyhow!("fetching {what} from {endpoint} failed: {err}");
    };
    let detail = e.to_string();
    let Some(response) = (*e).into_response() else {
        return anyhow!(
            "cannot reach {endpoint} to fetch {what} ({detail}); check the network or HF_ENDPOINT, \
             {LOCAL_HINT}"
        );
    };
    let status = response.status();
    let code = response.header("x-error-code").unwrap_or("").to_string();
    let server_says = response
        .header("x-error-message")
        .map(|m| format!(": {}", m.trim()))
        .unwrap_or_default();
    let token_hint = if settings.token.is_some() {
        "check that HF_TOKEN grants access to it"
    } else {
        "private and gated repos need a token in HF_TOKEN"
    };
    match (status, code.as_str()) {
        (404, "RevisionNotFound") => anyhow!(
            "revision `{revision}` of {repo} not found at {endpoint} (HTTP 404{server_says}); \
             check the revision after `@`, or pass a local folder with --model PATH"
        ),
        (404, "EntryNotFound") => anyhow!("{what} not found at {endpoint} (HTTP 404{server_says}); {LOCAL_HINT}"),
        (403, _) | (401, "GatedRepo") => anyhow!(
            "access to {repo} denied by {endpoint} (HTTP {status}{server_says}); accept its terms on the model page \
             and set HF_TOKEN, or pass a local folder with --model PATH"
        ),
        (401 | 404, _) => anyhow!(
            "model repo {repo} not found at {endpoint} (HTTP {status}{server_says}, fetching {what}); \
             {LOCAL_HINT} ({token_hint})"
        ),
        _ => anyhow!(
            "{endpoint} answered HTTP {status}{server_says} when fetching {what}; \
             try again later, or pass a local folder with --model PATH"
        ),
    }
}

/// `name` or `org/name`, made of letters, digits, `-`, `_` and `.`.
fn check_repo_id(repo: &str) -> Result<()> {
    let parts: Vec<&str> = repo.split('/').collect();
    let ok = (1..=2).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
    if ok {
        Ok(())
    } else {
        bail!("invalid Hub model id `{repo}`: expected `org/name`; {LOCAL_HINT}")
    }
}

/// A relative path that stays inside the folder it is joined to.
fn is_safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && !path.contains(':')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// A full 40-hex-digit commit id.
fn is_commit_hash(revision: &str) -> bool {
    revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn layout_prefers_safetensors_then_gguf() {
        let f = names(&["config.json", "model.safetensors", "model-Q4_K_M.gguf"]);
        assert_eq!(
            choose_layout(&f).unwrap(),
            Layout::Single("model.safetensors".into())
        );
        let f = names(&[
            "config.json",
            INDEX_FILE,
            "model-00001-of-00002.safetensors",
            "model.safetensors",
        ]);
        assert_eq!(choose_layout(&f).unwrap(), Layout::Sharded);
        let f = names(&[
            "config.json",
            "consolidated.safetensors",
            "sub/other.safetensors",
        ]);
        assert_eq!(
            choose_layout(&f).unwrap(),
            Layout::Single("consolidated.safetensors".into())
        );
        let f = names(&["a.safetensors", "b.safetensors"]);
        assert!(choose_layout(&f)
            .unwrap_err()
            .contains("a.safetensors, b.safetensors"));
        let f = names(&["README.md", "x-Q8_0.gguf"]);
        assert_eq!(
            choose_layout(&f).unwrap(),
            Layout::Gguf("x-Q8_0.gguf".into())
        );
        assert!(choose_layout(&names(&["README.md"]))
            .unwrap_err()
            .contains("README.md"));
    }

    #[test]
    fn gguf_rule() {
        assert_eq!(
            pick_gguf(&["m-Q8_0.gguf", "m-Q4_K_M.gguf", "m-F16.gguf"]),
            Ok("m-Q4_K_M.gguf")
        );
        assert_eq!(
            pick_gguf(&["m.q8_0.gguf", "m.q4_k_s.gguf"]),
            Ok("m.q8_0.gguf")
        );
        assert_eq!(
            pick_gguf(&["m-Q6_K.gguf", "mmproj-m-f16.gguf"]),
            Ok("m-Q6_K.gguf")
        );
        assert_eq!(
            pick_gguf(&[
                "m-Q4_K_M-00001-of-00002.gguf",
                "m-Q4_K_M-00002-of-00002.gguf",
                "s-Q8_0.gguf"
            ]),
            Ok("s-Q8_0.gguf")
        );
        let err = pick_gguf(&["m-Q6_K.gguf", "m-Q5_K_M.gguf"]).unwrap_err();
        assert!(
            err.contains("m-Q6_K.gguf, m-Q5_K_M.gguf") && err.contains("--model FILE"),
            "{err}"
        );
        assert!(pick_gguf(&["m-IQ4_K_M.gguf", "m-Q4_K_M_L.gguf"]).is_err());
        assert!(is_split_gguf("a-00001-of-00003.gguf") && !is_split_gguf("a-Q4_0.gguf"));
    }

    #[test]
    fn ids_revisions_and_paths_are_checked() {
        assert!(check_repo_id("org/name-1.5B_x").is_ok() && check_repo_id("gpt2").is_ok());
        for bad in ["", "a/b/c", "../x", "a/..", "a b/c", "/x"] {
            assert!(check_repo_id(bad).is_err(), "{bad}");
        }
        assert!(is_safe_relative("refs/pr/1") && is_safe_relative("sub/model.gguf"));
        for bad in ["", "../x", "a/../b", "/abs", "a//b", "c:x", "a\\b"] {
            assert!(!is_safe_relative(bad), "{bad}");
        }
    }

    #[test]
    fn settings_follow_the_python_library() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let s = HubSettings::from_vars(vars(&[("HOME", "/h")])).unwrap();
        assert_eq!(s.cache_dir, PathBuf::from("/h/.cache/huggingface/hub"));
        assert_eq!(s.endpoint, DEFAULT_ENDPOINT);
        assert!(!s.offline && s.show_progress && s.token.is_none());
        let s = HubSettings::from_vars(vars(&[
            ("HOME", "/h"),
            ("HF_HOME", "/hf"),
            ("HF_ENDPOINT", "http://127.0.0.1:9/"),
            ("HF_HUB_OFFLINE", "True"),
            ("HF_TOKEN", "hf_x"),
            ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
        ]))
        .unwrap();
        assert_eq!(s.cache_dir, PathBuf::from("/hf/hub"));
        assert_eq!(s.endpoint, "http://127.0.0.1:9");
        assert!(s.offline && !s.show_progress);
        assert_eq!(s.token.as_deref(), Some("hf_x"));
        assert!(!format!("{s:?}").contains("hf_x"));
        let s = HubSettings::from_vars(vars(&[
            ("HF_HOME", "/hf"),
            ("HF_HUB_CACHE", "/c"),
            ("HF_HUB_OFFLINE", "0"),
        ]))
        .unwrap();
        assert_eq!(s.cache_dir, PathBuf::from("/c"));
        assert!(!s.offline);
        let s = HubSettings::from_vars(vars(&[("XDG_CACHE_HOME", "/x")])).unwrap();
        assert_eq!(s.cache_dir, PathBuf::from("/x/huggingface/hub"));
        assert!(HubSettings::from_vars(vars(&[])).is_err());
    }
}
