//! Decoding the plan keys beyond the basic stage: size distributions, key
//! selection, pacing, ranges, listing, retries and timeouts, endpoints, data
//! shape and pinning. Same rules as `load.rs`: every error is located and
//! says what was expected and what was found.

use std::time::Duration;

use super::error::{PlanError, hint_for};
use super::load::{Decoder, MAX_PART_SIZE, Map, join};
use super::units::{format_duration, format_size, parse_duration};
use super::yaml::{Entry, NodeKind, Pos};
use super::{
    AgentLossPolicy, Arrivals, ClockCheck, ControlOptions, DataOptions, EndpointSpec,
    KeyDistribution, KeyNaming, ListSpec, MIN_COLLECT_INTERVAL, Pacing, Partition, Pinning,
    RangeSpec, RetryPolicy, SizeSpec, StageKind,
};
use crate::datagen;
use crate::store::multi::{MAX_ENDPOINTS, count_template};

/// Balancing strategies a plan may name.
pub(super) const BALANCES: [&str; 2] = ["round_robin", "least_connections"];

/// Keys of `control:`.
const CONTROL_KEYS: [&str; 7] = [
    "on_agent_loss",
    "agent_timeout",
    "controller_timeout",
    "max_clock_offset",
    "max_clock_uncertainty",
    "clock_check",
    "collect_interval",
];

/// Most retries a plan may ask for: more than this hides a broken target.
const MAX_RETRIES: u64 = 100;

/// Most buckets in a bucketed size distribution.
const MAX_SIZE_BUCKETS: usize = 64;

/// Plan-level values that stages inherit.
#[derive(Clone, Debug)]
pub(crate) struct StageDefaults {
    pub retry: RetryPolicy,
    pub endpoints: Vec<EndpointSpec>,
    pub balance: String,
}

/// The decoded stage keys of this module.
pub(super) struct StageOptions {
    pub warmup: Option<Duration>,
    pub pacing: Pacing,
    pub range: RangeSpec,
    pub part_size: u64,
    pub list: ListSpec,
    pub verify: bool,
    pub overwrite: bool,
    pub retry: RetryPolicy,
    pub pool: Option<u32>,
    pub endpoints: Vec<EndpointSpec>,
    pub balance: String,
}

/// Default part size of multipart PUTs: 8 MiB, the AWS CLI's default.
pub(super) const DEFAULT_PART_SIZE: u64 = 8 << 20;

impl Decoder<'_> {
    pub(super) fn boolean(&self, e: &Entry, path: &str) -> Result<bool, PlanError> {
        match &e.value.kind {
            NodeKind::Scalar { text, plain: true } if text == "true" => Ok(true),
            NodeKind::Scalar { text, plain: true } if text == "false" => Ok(false),
            _ => Err(self.wrong(e, path, "`true` or `false`")),
        }
    }

    /// An unquoted number `>= min` (and `> 0` when `min` is 0 and
    /// `positive`).
    pub(super) fn number(
        &self,
        e: &Entry,
        path: &str,
        min: f64,
        positive: bool,
    ) -> Result<f64, PlanError> {
        let expected = if positive {
            "a positive number"
        } else {
            "a number"
        };
        let NodeKind::Scalar { text, plain: true } = &e.value.kind else {
            return Err(self.wrong(e, path, expected));
        };
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= min && (!positive || v > 0.0) => Ok(v),
            Ok(v) if v.is_finite() && positive && min == 0.0 => {
                let message = format!("`{}` must be a positive number, got {text}", e.key);
                Err(self.err(e.value.pos, path, message))
            }
            Ok(v) if v.is_finite() => {
                let message = format!("`{}` must be at least {min}, got {text}", e.key);
                Err(self.err(e.value.pos, path, message))
            }
            _ => Err(self.wrong(e, path, expected)),
        }
    }

    fn strings(&self, e: &Entry, path: &str, what: &str) -> Result<Vec<String>, PlanError> {
        let NodeKind::Seq(items) = &e.value.kind else {
            return Err(self.wrong(e, path, what));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                self.string_node(item, &format!("{path}[{i}]"), &format!("{path}[{i}]"))
            })
            .collect()
    }

    pub(super) fn one_of(
        &self,
        e: &Entry,
        path: &str,
        valid: &[&str],
    ) -> Result<String, PlanError> {
        let text = self.string(e, path)?;
        if valid.contains(&text.as_str()) {
            return Ok(text);
        }
        let message = format!("unknown `{}` value `{text}`", e.key);
        Err(self
            .err(e.value.pos, path, message)
            .with_hint(hint_for(&text, valid, "values")))
    }

    /// `retries`, `retry_backoff`, `timeout`, `endpoints`, `balance` of the
    /// plan, inherited by stages that do not set them.
    pub(super) fn stage_defaults(&self, m: &Map<'_>) -> Result<StageDefaults, PlanError> {
        let base = StageDefaults {
            retry: RetryPolicy::default(),
            endpoints: Vec::new(),
            balance: BALANCES[0].to_string(),
        };
        self.stage_common(m, &base)
    }

    fn stage_common(&self, m: &Map<'_>, base: &StageDefaults) -> Result<StageDefaults, PlanError> {
        let p = |k: &str| join(&m.path, k);
        let mut d = base.clone();
        if let Some(e) = m.get("retries") {
            d.retry.retries = self.integer(e, &p("retries"), 0, MAX_RETRIES)? as u32;
        }
        if let Some(e) = m.get("retry_backoff") {
            d.retry.backoff = self.duration(e, &p("retry_backoff"))?;
        }
        if let Some(e) = m.get("timeout") {
            d.retry.timeout = self.duration(e, &p("timeout"))?;
        }
        if let Some(e) = m.get("endpoints") {
            d.endpoints = self.endpoint_list(e, &p("endpoints"))?;
            if d.endpoints.is_empty() {
                return Err(self.err(
                    e.value.pos,
                    &p("endpoints"),
                    "`endpoints` must list at least one endpoint",
                ));
            }
        }
        if let Some(e) = m.get("balance") {
            d.balance = self.one_of(e, &p("balance"), &BALANCES)?;
        }
        Ok(d)
    }

    /// `endpoints: ["http://a:9000", {url: "http://b{1...2}:9000", pool: 1}]`.
    pub(super) fn endpoint_list(
        &self,
        e: &Entry,
        path: &str,
    ) -> Result<Vec<EndpointSpec>, PlanError> {
        let NodeKind::Seq(items) = &e.value.kind else {
            return Err(self.wrong(e, path, "a list of endpoint URLs, templates or {url, pool}"));
        };
        let mut out = Vec::with_capacity(items.len());
        // Endpoints the templates of the list make, over the whole list.
        let mut count = 0;
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{path}[{i}]");
            if let NodeKind::Map(_) = item.kind {
                let m = self.map(item, ip.clone(), format!("`{ip}`"), &["url", "pool"], "key")?;
                let url_entry = self.required(&m, "url")?;
                let url_path = join(&ip, "url");
                let url = self.string(url_entry, &url_path)?;
                count += self.endpoint_count(&url, url_entry.value.pos, &url_path, count)?;
                let pool = m
                    .get("pool")
                    .map(|e| self.integer(e, &join(&ip, "pool"), 0, 4096))
                    .transpose()?
                    .map(|v| v as u32);
                out.push(EndpointSpec { url, pool });
            } else {
                let url = self.string_node(item, &ip, &ip)?;
                count += self.endpoint_count(&url, item.pos, &ip, count)?;
                out.push(EndpointSpec { url, pool: None });
            }
        }
        Ok(out)
    }

    /// Checks one entry of an `endpoints` list, as the agent will read it
    /// when its stage starts (`store::multi::open_multi`), and returns how
    /// many endpoints it makes; `before` is how many the entries before it
    /// made. Checked here so that a typo in the last stage fails when the
    /// plan loads, not after the stages before it ran. An `@path` list is
    /// a file on the agent's host, which this host may not have: only its
    /// form is checked here, its lines when the stage starts.
    fn endpoint_count(
        &self,
        url: &str,
        pos: Pos,
        path: &str,
        before: usize,
    ) -> Result<usize, PlanError> {
        if let Some(file) = url.strip_prefix('@') {
            if file.trim().is_empty() {
                let message = "`@` must be followed by the path of an endpoint file";
                return Err(self.err(pos, path, message));
            }
            return Ok(0);
        }
        let n = count_template(url).map_err(|m| {
            self.err(pos, path, m)
                .with_hint("an endpoint is a URL, with `{FIRST...LAST}` ranges if it stands for several, e.g. `http://10.0.0.{1...8}:9000`")
        })?;
        if before + n > MAX_ENDPOINTS {
            let message =
                format!("more than {MAX_ENDPOINTS} endpoints in the list ({before} and {n} more)");
            return Err(self.err(pos, path, message));
        }
        Ok(n)
    }

    pub(super) fn data_options(&self, m: &Map<'_>) -> Result<DataOptions, PlanError> {
        let Some(e) = m.get("data") else {
            return Ok(DataOptions::default());
        };
        let path = join(&m.path, "data");
        let p = |k: &str| join(&path, k);
        let dm = self.map(
            &e.value,
            path.clone(),
            format!("`{path}`"),
            &["dedup", "compress", "reuse"],
            "key",
        )?;
        let mut d = DataOptions::default();
        if let Some(e) = dm.get("dedup") {
            d.dedup = self.integer(e, &p("dedup"), 1, u64::from(datagen::MAX_DEDUP))? as u32;
        }
        if let Some(e) = dm.get("compress") {
            d.compress = self.number(e, &p("compress"), 1.0, true)?;
            if d.compress > datagen::MAX_COMPRESS {
                let message = format!(
                    "`compress` must be at most {}, got {}",
                    datagen::MAX_COMPRESS,
                    d.compress
                );
                return Err(self.err(e.value.pos, &p("compress"), message));
            }
        }
        if let Some(e) = dm.get("reuse") {
            d.reuse = self.boolean(e, &p("reuse"))?;
        }
        Ok(d)
    }

    /// `control:`: lost-agent policy, heartbeat timeouts, clock limits.
    pub(super) fn control(&self, m: &Map<'_>) -> Result<ControlOptions, PlanError> {
        let mut c = ControlOptions::default();
        let Some(e) = m.get("control") else {
            return Ok(c);
        };
        let cm = self.map(
            &e.value,
            "control".into(),
            "`control`".into(),
            &CONTROL_KEYS,
            "key",
        )?;
        if let Some(e) = cm.get("on_agent_loss") {
            c.on_agent_loss = match self
                .one_of(e, "control.on_agent_loss", &["abort", "continue"])?
                .as_str()
            {
                "continue" => AgentLossPolicy::Continue,
                _ => AgentLossPolicy::Abort,
            };
        }
        if let Some(e) = cm.get("agent_timeout") {
            c.agent_timeout = self.duration(e, "control.agent_timeout")?;
        }
        if let Some(e) = cm.get("controller_timeout") {
            c.controller_timeout = self.duration(e, "control.controller_timeout")?;
        }
        if let Some(e) = cm.get("max_clock_offset") {
            c.max_clock_offset = Some(self.duration(e, "control.max_clock_offset")?);
        }
        if let Some(e) = cm.get("max_clock_uncertainty") {
            c.max_clock_uncertainty = self.duration(e, "control.max_clock_uncertainty")?;
        }
        if let Some(e) = cm.get("clock_check") {
            c.clock_check = match self
                .one_of(e, "control.clock_check", &["warn", "refuse"])?
                .as_str()
            {
                "refuse" => ClockCheck::Refuse,
                _ => ClockCheck::Warn,
            };
        }
        if let Some(e) = cm.get("collect_interval") {
            c.collect_interval = self.collect_interval(e)?;
        }
        Ok(c)
    }

    /// `control.collect_interval`: a duration of at least
    /// [`MIN_COLLECT_INTERVAL`], or `0` / `off` for none.
    fn collect_interval(&self, e: &Entry) -> Result<Option<Duration>, PlanError> {
        const PATH: &str = "control.collect_interval";
        let text = self.string(e, PATH)?;
        if text.trim() == "off" {
            return Ok(None);
        }
        let d = parse_duration(&text).map_err(|m| {
            self.err(
                e.value.pos,
                PATH,
                format!("invalid `collect_interval`: {m}, or `off`"),
            )
        })?;
        if d.is_zero() {
            return Ok(None);
        }
        if d < MIN_COLLECT_INTERVAL {
            let message = format!(
                "`collect_interval` must be at least {} (or `off`), got {text}",
                format_duration(MIN_COLLECT_INTERVAL)
            );
            return Err(self.err(e.value.pos, PATH, message));
        }
        Ok(Some(d))
    }

    pub(super) fn pinning(&self, m: &Map<'_>) -> Result<Pinning, PlanError> {
        let Some(e) = m.get("pinning") else {
            return Ok(Pinning::default());
        };
        let path = join(&m.path, "pinning");
        if let NodeKind::Seq(_) = &e.value.kind {
            let sets = self.strings(e, &path, "a list of CPU sets like \"0-3\"")?;
            for (i, set) in sets.iter().enumerate() {
                if let Err(why) = crate::topology::parse_cpu_list(set) {
                    let message =
                        format!("`{path}[{i}]`: `{set}` is not a CPU list like `0-3,8`: {why}");
                    return Err(self.err(e.value.pos, &format!("{path}[{i}]"), message));
                }
            }
            if sets.is_empty() {
                return Err(self.err(
                    e.value.pos,
                    &path,
                    "`pinning` must list at least one CPU set",
                ));
            }
            return Ok(Pinning::CpuSets(sets));
        }
        match self.one_of(e, &path, &["numa", "none"])?.as_str() {
            "numa" => Ok(Pinning::Numa),
            _ => Ok(Pinning::None),
        }
    }

    /// `size: 4KiB`, or one of `{uniform: {min, max}}`,
    /// `{lognormal: {mean, stddev, min, max}}`, `{buckets: {4KiB: 70, …}}`.
    pub(super) fn size_spec(&self, e: &Entry, path: &str) -> Result<SizeSpec, PlanError> {
        if let NodeKind::Scalar { .. } = e.value.kind {
            return Ok(SizeSpec::Fixed(self.size(e, path, 0)?));
        }
        let kinds = ["uniform", "lognormal", "buckets"];
        let m = self.map(
            &e.value,
            path.to_string(),
            format!("`{path}`"),
            &kinds,
            "size distribution",
        )?;
        let [d] = m.entries else {
            let message = format!(
                "`{path}` must name exactly one distribution: uniform, lognormal or buckets"
            );
            return Err(self.err(e.value.pos, path, message));
        };
        let dp = join(path, &d.key);
        match d.key.as_str() {
            "uniform" => {
                let um = self.map(
                    &d.value,
                    dp.clone(),
                    format!("`{dp}`"),
                    &["min", "max"],
                    "key",
                )?;
                let min = self.size(self.required(&um, "min")?, &join(&dp, "min"), 0)?;
                let max_e = self.required(&um, "max")?;
                let max = self.size(max_e, &join(&dp, "max"), min)?;
                Ok(SizeSpec::Uniform { min, max })
            }
            "lognormal" => {
                let keys = ["mean", "stddev", "min", "max"];
                let lm = self.map(&d.value, dp.clone(), format!("`{dp}`"), &keys, "key")?;
                let mean = self.size(self.required(&lm, "mean")?, &join(&dp, "mean"), 1)?;
                let stddev = self.size(self.required(&lm, "stddev")?, &join(&dp, "stddev"), 0)?;
                let min = lm
                    .get("min")
                    .map(|e| self.size(e, &join(&dp, "min"), 0))
                    .transpose()?
                    .unwrap_or(0);
                let max = match lm.get("max") {
                    Some(e) => self.size(e, &join(&dp, "max"), min.max(1))?,
                    None => mean.saturating_mul(16),
                };
                Ok(SizeSpec::Lognormal {
                    mean,
                    stddev,
                    min,
                    max,
                })
            }
            _ => {
                let NodeKind::Map(entries) = &d.value.kind else {
                    return Err(self.wrong(d, &dp, "a mapping of size: weight"));
                };
                if entries.is_empty() || entries.len() > MAX_SIZE_BUCKETS {
                    let message = format!("`{dp}` needs 1 to {MAX_SIZE_BUCKETS} buckets");
                    return Err(self.err(d.value.pos, &dp, message));
                }
                let mut buckets = Vec::new();
                for b in entries {
                    let bp = join(&dp, &b.key);
                    let size = super::parse_size(&b.key).map_err(|m| {
                        self.err(
                            b.key_pos,
                            &bp,
                            format!("invalid bucket size `{}`: {m}", b.key),
                        )
                    })?;
                    let w = self.integer(b, &bp, 0, u64::from(u32::MAX))? as u32;
                    buckets.push((size, w));
                }
                if buckets.iter().all(|&(_, w)| w == 0) {
                    return Err(self.err(d.value.pos, &dp, format!("`{dp}` has all weights zero")));
                }
                Ok(SizeSpec::Buckets(buckets))
            }
        }
    }

    pub(super) fn distribution(&self, m: &Map<'_>) -> Result<KeyDistribution, PlanError> {
        let path = join(&m.path, "distribution");
        let Some(e) = m.get("distribution") else {
            return Ok(KeyDistribution::Uniform);
        };
        if let NodeKind::Scalar { .. } = e.value.kind {
            self.one_of(e, &path, &["uniform"])?;
            return Ok(KeyDistribution::Uniform);
        }
        let zm = self.map(
            &e.value,
            path.clone(),
            format!("`{path}`"),
            &["zipf"],
            "distribution",
        )?;
        let z = self.required(&zm, "zipf")?;
        Ok(KeyDistribution::Zipf(self.number(
            z,
            &join(&path, "zipf"),
            0.0,
            true,
        )?))
    }

    pub(super) fn partition(&self, m: &Map<'_>) -> Result<Partition, PlanError> {
        match m.get("partition") {
            None => Ok(Partition::Shared),
            Some(e) => match self
                .one_of(e, &join(&m.path, "partition"), &["shared", "agent"])?
                .as_str()
            {
                "shared" => Ok(Partition::Shared),
                _ => Ok(Partition::Agent),
            },
        }
    }

    /// `naming: {width: W, fanout: F}`, both optional.
    pub(super) fn naming(&self, m: &Map<'_>) -> Result<KeyNaming, PlanError> {
        let path = join(&m.path, "naming");
        let Some(e) = m.get("naming") else {
            return Ok(KeyNaming::default());
        };
        let nm = self.map(
            &e.value,
            path.clone(),
            format!("`{path}`"),
            &["width", "fanout"],
            "key",
        )?;
        let mut naming = KeyNaming::default();
        if let Some(w) = nm.get("width") {
            let max = u64::from(KeyNaming::MAX_WIDTH);
            naming.width = self.integer(w, &join(&path, "width"), 1, max)? as u8;
        }
        if let Some(f) = nm.get("fanout") {
            let fanout = self.integer(f, &join(&path, "fanout"), 1, 1_000_000)?;
            naming.fanout = Some(fanout as u32);
        }
        Ok(naming)
    }

    pub(super) fn stage_options(
        &self,
        m: &Map<'_>,
        what: &str,
        kind: StageKind,
        defaults: &StageDefaults,
    ) -> Result<StageOptions, PlanError> {
        let p = |k: &str| join(&m.path, k);
        let common = self.stage_common(m, defaults)?;
        let warmup = m
            .get("warmup")
            .map(|e| self.duration(e, &p("warmup")))
            .transpose()?;
        let pacing = match (m.get("rate"), m.get("arrivals")) {
            (Some(r), a) => {
                let rate = self.number(r, &p("rate"), 0.0, true)?;
                let arrivals = match a {
                    None => Arrivals::Poisson,
                    Some(a) => match self
                        .one_of(a, &p("arrivals"), &["poisson", "fixed"])?
                        .as_str()
                    {
                        "poisson" => Arrivals::Poisson,
                        _ => Arrivals::Fixed,
                    },
                };
                Pacing::Open { rate, arrivals }
            }
            // A rate search's steps are open loop: `search` reads it.
            (None, Some(_)) if kind == StageKind::Search => Pacing::Closed,
            (None, Some(a)) => {
                let message = format!(
                    "`arrivals` needs `rate` in {what}: arrivals only apply to open-loop stages"
                );
                return Err(self.err(a.key_pos, &p("arrivals"), message));
            }
            (None, None) => Pacing::Closed,
        };
        if pacing != Pacing::Closed && kind == StageKind::Search {
            let message = format!(
                "`rate` is not allowed in search stages: {what} varies the load itself \
                 (`search.vary`)"
            );
            return Err(self.err(
                m.get("rate").map_or(m.node.pos, |e| e.key_pos),
                &p("rate"),
                message,
            ));
        }
        if pacing != Pacing::Closed && kind != StageKind::Workload {
            let message = format!(
                "`rate` is only allowed in workload stages; {what} is a {} stage",
                kind.name()
            );
            return Err(self.err(
                m.get("rate").map_or(m.node.pos, |e| e.key_pos),
                &p("rate"),
                message,
            ));
        }
        let range = match m.get("range") {
            None => RangeSpec::default(),
            Some(e) => {
                let rp = p("range");
                let rm = self.map(
                    &e.value,
                    rp.clone(),
                    format!("`range` of {what}"),
                    &["size", "offset", "length"],
                    "key",
                )?;
                match (rm.get("size"), rm.get("offset"), rm.get("length")) {
                    (Some(s), None, None) => RangeSpec::Random {
                        size: self.size(s, &join(&rp, "size"), 1)?,
                    },
                    (None, o, Some(l)) => RangeSpec::Fixed {
                        offset: o
                            .map(|o| self.size(o, &join(&rp, "offset"), 0))
                            .transpose()?
                            .unwrap_or(0),
                        length: self.size(l, &join(&rp, "length"), 1)?,
                    },
                    _ => {
                        let message =
                            "`range` takes either `size` (random ranges) or `offset` and `length`";
                        return Err(self.err(e.value.pos, &rp, message));
                    }
                }
            }
        };
        let part_size = match m.get("part_size") {
            None => DEFAULT_PART_SIZE,
            Some(e) => {
                let size = self.size(e, &p("part_size"), 1)?;
                if size > MAX_PART_SIZE {
                    let message = format!(
                        "`part_size` {} is above {}: a part is made whole in memory",
                        format_size(size),
                        format_size(MAX_PART_SIZE)
                    );
                    return Err(self.err(e.value.pos, &p("part_size"), message));
                }
                size
            }
        };
        let list = match m.get("list") {
            None => ListSpec::default(),
            Some(e) => {
                let lp = p("list");
                let lm = self.map(
                    &e.value,
                    lp.clone(),
                    format!("`list` of {what}"),
                    &["prefix", "delimiter"],
                    "key",
                )?;
                let prefix = lm
                    .get("prefix")
                    .map(|e| self.string(e, &join(&lp, "prefix")))
                    .transpose()?;
                let delimiter = match lm.get("delimiter") {
                    None => None,
                    Some(e) => {
                        let d = self.string(e, &join(&lp, "delimiter"))?;
                        let mut chars = d.chars();
                        match (chars.next(), chars.next()) {
                            (Some(c), None) => Some(c),
                            _ => {
                                let message =
                                    format!("`delimiter` must be one character, got `{d}`");
                                return Err(self.err(
                                    e.value.pos,
                                    &join(&lp, "delimiter"),
                                    message,
                                ));
                            }
                        }
                    }
                };
                ListSpec { prefix, delimiter }
            }
        };
        let verify = m
            .get("verify")
            .map(|e| self.boolean(e, &p("verify")))
            .transpose()?
            .unwrap_or(false);
        let overwrite = m
            .get("overwrite")
            .map(|e| self.boolean(e, &p("overwrite")))
            .transpose()?
            .unwrap_or(false);
        let pool = m
            .get("pool")
            .map(|e| self.integer(e, &p("pool"), 0, 4096))
            .transpose()?
            .map(|v| v as u32);
        Ok(StageOptions {
            warmup,
            pacing,
            range,
            part_size,
            list,
            verify,
            overwrite,
            retry: common.retry,
            pool,
            endpoints: common.endpoints,
            balance: common.balance,
        })
    }
}
