//! The model as a file: `{"version":1, "hash_check":…, "sources":[…], "populations":[…]}`,
//! so the daemon's baselines survive a restart (it writes the file; this is only the
//! format). `populations` holds the client behaviour's measures of each source's clients
//! (see [`super::super::behaviour`]); files written before it have none.
//!
//! Values, clients and endpoints are kept as the model's hashes. Its hasher has a fixed
//! seed, so they mean the same in the next process; `hash_check` is the hash of a fixed
//! text, and a file whose check differs was written by a build that hashes otherwise:
//! its hashes would match nothing, so it is refused rather than misread.
//!
//! What comes from the file is bounded as the model bounds what it learns (parameters,
//! values, endpoints, trusted clients) and its counts are made consistent, so a file
//! edited by hand can make the model wrong, never make it panic or grow.

use serde::{Deserialize, Serialize};

use super::{
    hash_parts, Endpoint, Model, Param, Settings, Source, Values, CONTRIBUTORS, MAX_NAME,
    MAX_PARAMS, MAX_SOURCE_PARAMS, MAX_TRUST, MAX_VALUES, NCLASS, TRUST_AFTER,
};

/// The version of the file this build writes and reads.
pub const MODEL_VERSION: u32 = 1;

/// Longest value length kept from a file (a longer one is a hand edit).
const MAX_LEN: u32 = 1 << 24;

/// Why a model file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("it is not a model file: {0}")]
    Json(#[from] serde_json::Error),
    #[error("it has version {found}, this build reads version {MODEL_VERSION}")]
    Version { found: u32 },
    #[error("it was written by a build that hashes values differently")]
    Hashing,
    #[error("{0}")]
    Invalid(String),
}

/// The whole model as written: made on the pipeline's thread (a copy, quick), turned
/// into bytes wherever the caller likes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    version: u32,
    hash_check: u64,
    sources: Vec<SourceFile>,
    /// The client behaviour's populations (absent from files before it).
    #[serde(default)]
    populations: Vec<PopulationFile>,
}

/// One source's population of clients as written: each client's measures at its
/// checkpoint, oldest first, in the order `measures` names them; a measure not taken
/// of a client is `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PopulationFile {
    pub source: String,
    pub measures: Vec<String>,
    pub clients: Vec<Vec<Option<f64>>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SourceFile {
    name: String,
    learned: u64,
    evicted: u64,
    tick: usize,
    /// Hashes of the clients that earned trust (see `TRUST_AFTER`).
    trust: Vec<u64>,
    endpoints: Vec<EndpointFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EndpointFile {
    key: u64,
    label: String,
    samples: u32,
    /// (client hash, samples counted, of which inherited).
    contributors: Vec<(u64, u32, u32)>,
    /// The status mix: answers 2xx, 3xx, 4xx, 5xx (absent from files before it).
    #[serde(default)]
    answers: [u32; 4],
    params: Vec<ParamFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ParamFile {
    name: Name,
    count: u32,
    classes: Vec<u32>,
    max_len: u32,
    values: Option<Vec<(u64, u32)>>,
}

/// A parameter name: text when it is UTF-8 (nearly always), else its bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum Name {
    Text(String),
    Bytes(Vec<u8>),
}

impl Name {
    fn of(b: &[u8]) -> Name {
        match std::str::from_utf8(b) {
            Ok(s) => Name::Text(s.to_string()),
            Err(_) => Name::Bytes(b.to_vec()),
        }
    }

    fn into_bytes(self) -> Vec<u8> {
        match self {
            Name::Text(s) => s.into_bytes(),
            Name::Bytes(b) => b,
        }
    }
}

#[derive(Deserialize)]
struct Head {
    version: u32,
}

impl Snapshot {
    /// The file's bytes (JSON).
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Endpoints in it, over every source.
    pub fn endpoints(&self) -> usize {
        self.sources.iter().map(|s| s.endpoints.len()).sum()
    }

    /// The same, with the client behaviour's populations.
    pub fn with_populations(mut self, populations: Vec<PopulationFile>) -> Snapshot {
        self.populations = populations;
        self
    }
}

impl Model {
    fn hash_check(&self) -> u64 {
        hash_parts(&self.hasher, &[b"security-monitor anomaly model"])
    }

    /// A copy of what the model holds, to be written as its file.
    pub fn snapshot(&self) -> Snapshot {
        let mut sources: Vec<SourceFile> = self
            .sources
            .iter()
            .map(|(name, s)| SourceFile {
                name: name.clone(),
                learned: s.learned,
                evicted: s.evicted,
                tick: s.tick,
                // Only the clients that earned trust: the others (most of them, one
                // request each) earn it again in a few requests, and would make most
                // of the file.
                trust: {
                    let mut t: Vec<u64> = s
                        .trust
                        .iter()
                        .filter(|(_, &n)| n >= TRUST_AFTER)
                        .map(|(&k, _)| k)
                        .collect();
                    t.sort_unstable();
                    t
                },
                endpoints: s
                    .endpoints
                    .iter()
                    .map(|e| EndpointFile {
                        key: e.key,
                        label: e.label.clone(),
                        samples: e.samples,
                        contributors: e.contributors.to_vec(),
                        answers: e.answers,
                        params: e.params.iter().map(param_file).collect(),
                    })
                    .collect(),
            })
            .collect();
        sources.sort_by(|a, b| a.name.cmp(&b.name));
        Snapshot {
            version: MODEL_VERSION,
            hash_check: self.hash_check(),
            sources,
            populations: Vec::new(),
        }
    }

    /// The model a file holds, with `settings` (the config's, not the file's). Pure: the
    /// caller reads the file and decides what to do with a bad one.
    pub fn from_json(settings: Settings, bytes: &[u8]) -> Result<Model, ModelFileError> {
        let head: Head = serde_json::from_slice(bytes)?;
        if head.version != MODEL_VERSION {
            return Err(ModelFileError::Version {
                found: head.version,
            });
        }
        let snap: Snapshot = serde_json::from_slice(bytes)?;
        let mut m = Model::new(settings);
        if snap.hash_check != m.hash_check() {
            return Err(ModelFileError::Hashing);
        }
        let max_samples = settings.decay_every.max(2);
        for sf in snap.sources {
            let mut s = Source {
                learned: sf.learned,
                evicted: sf.evicted,
                tick: sf.tick,
                ..Source::default()
            };
            for k in sf.trust.into_iter().take(MAX_TRUST) {
                s.trust.insert(k, TRUST_AFTER);
            }
            for ef in sf.endpoints {
                if s.index.contains_key(&ef.key) {
                    continue;
                }
                s.endpoints.push(endpoint(ef, max_samples)?);
                s.index.insert(
                    s.endpoints[s.endpoints.len() - 1].key,
                    s.endpoints.len() - 1,
                );
            }
            s.params = s.endpoints.iter().map(|e| e.params.len()).sum();
            while (s.endpoints.len() > settings.max_endpoints.max(1)
                || s.params > MAX_SOURCE_PARAMS)
                && s.evict(None)
            {}
            m.sources.insert(sf.name, s);
        }
        m.populations = snap.populations;
        Ok(m)
    }
}

/// One parameter as written.
fn param_file(p: &Param) -> ParamFile {
    ParamFile {
        name: Name::of(&p.name),
        count: p.count,
        classes: p.classes.iter().map(|&c| u32::from(c)).collect(),
        max_len: p.max_len,
        values: p
            .values
            .kept()
            .map(|v| v.iter().map(|&(h, n)| (u64::from(h), n)).collect()),
    }
}

/// One endpoint from the file, its counts made consistent (none above its samples, the
/// samples below the decay point), so later arithmetic cannot overflow.
fn endpoint(ef: EndpointFile, max_samples: u32) -> Result<Endpoint, ModelFileError> {
    let samples = ef.samples.min(max_samples - 1);
    let mut contributors = [(0u64, 0u32, 0u32); CONTRIBUTORS];
    for (slot, (c, n, inherited)) in contributors.iter_mut().zip(ef.contributors) {
        let n = n.min(u32::MAX / 2);
        *slot = (c, n, inherited.min(n));
    }
    let mut params = Vec::new();
    for pf in ef.params.into_iter().take(MAX_PARAMS) {
        let counts: [u32; NCLASS] = pf.classes.try_into().map_err(|c: Vec<u32>| {
            ModelFileError::Invalid(format!(
                "endpoint {}: a parameter has {} character classes, expected {NCLASS}",
                ef.label,
                c.len()
            ))
        })?;
        let name = pf.name.into_bytes();
        if name.len() > MAX_NAME {
            continue;
        }
        let count = pf.count.min(samples);
        let mut classes = [0u16; NCLASS];
        let mut seen = 0u64;
        for (k, (c, &n)) in classes.iter_mut().zip(&counts).enumerate() {
            *c = n.min(u32::from(u16::MAX)) as u16;
            if *c > 0 {
                seen |= 1 << k;
            }
        }
        let mut values = Values::new();
        match pf.values {
            Some(v) if v.len() <= MAX_VALUES => {
                values.len = v.len() as u8;
                for (slot, (h, n)) in values.items.iter_mut().zip(v) {
                    // The hashes kept are the low half of the model's.
                    *slot = (h as u32, n.min(count));
                }
            }
            _ => values.len = Values::MANY,
        }
        params.push(Param {
            name: name.into_boxed_slice(),
            count,
            max_len: pf.max_len.min(MAX_LEN),
            seen,
            classes,
            values,
        });
    }
    Ok(Endpoint {
        key: ef.key,
        label: ef.label,
        samples,
        params,
        contributors,
        // Counted at most about as often as samples (and halved with them).
        answers: ef.answers.map(|n| n.min(max_samples.saturating_mul(4))),
    })
}
