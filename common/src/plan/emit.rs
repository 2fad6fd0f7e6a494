//! The way back from a loaded [`Plan`] to YAML: the canonical form written
//! as the "plan as run" and sent to agents. Every stage is written out in
//! full (defaults resolved, exact units, strings quoted), so
//! [`super::parse`] loads it back to an equal plan.

use std::fmt::Write as _;

use super::units::{format_duration, format_size};
use super::yaml::quote;
use super::{
    Arrivals, ClockCheck, DataOptions, EndpointSpec, KeyDistribution, Pacing, Partition, Pinning,
    Plan, RangeSpec, SizeSpec,
};

/// A float written so that it parses back to the same value.
pub(super) fn float(v: f64) -> String {
    let s = format!("{v:?}");
    if s.contains(['.', 'e', 'E']) {
        s
    } else {
        format!("{s}.0")
    }
}

/// `data:` in the canonical form.
pub(super) fn data(d: &DataOptions) -> String {
    format!(
        "{{dedup: {}, compress: {}, reuse: {}}}",
        d.dedup,
        float(d.compress),
        d.reuse
    )
}

/// `pinning:` in the canonical form.
pub(super) fn pinning(p: &Pinning) -> String {
    match p {
        Pinning::Numa => "numa".into(),
        Pinning::None => "none".into(),
        Pinning::CpuSets(sets) => {
            let sets: Vec<String> = sets.iter().map(|s| quote(s)).collect();
            format!("[{}]", sets.join(", "))
        }
    }
}

/// An `endpoints:` list in the canonical form.
pub(super) fn endpoints(list: &[EndpointSpec]) -> String {
    let eps: Vec<String> = list
        .iter()
        .map(|e| match e.pool {
            None => quote(&e.url),
            Some(p) => format!("{{url: {}, pool: {p}}}", quote(&e.url)),
        })
        .collect();
    format!("[{}]", eps.join(", "))
}

pub(super) fn size_spec(s: &SizeSpec) -> String {
    match s {
        SizeSpec::Fixed(b) => format_size(*b),
        SizeSpec::Uniform { min, max } => {
            format!(
                "{{uniform: {{min: {}, max: {}}}}}",
                format_size(*min),
                format_size(*max)
            )
        }
        SizeSpec::Lognormal {
            mean,
            stddev,
            min,
            max,
        } => format!(
            "{{lognormal: {{mean: {}, stddev: {}, min: {}, max: {}}}}}",
            format_size(*mean),
            format_size(*stddev),
            format_size(*min),
            format_size(*max)
        ),
        SizeSpec::Buckets(b) => {
            let items: Vec<String> = b
                .iter()
                .map(|(s, w)| format!("{}: {w}", format_size(*s)))
                .collect();
            format!("{{buckets: {{{}}}}}", items.join(", "))
        }
    }
}

impl Plan {
    /// The canonical YAML form; see the module doc.
    pub fn to_yaml(&self) -> String {
        let mut y = String::new();
        // Writing to a String cannot fail; the results are ignored.
        let _ = writeln!(y, "name: {}", quote(&self.name));
        if let Some(d) = &self.description {
            let _ = writeln!(y, "description: {}", quote(d));
        }
        let _ = writeln!(y, "seed: {}", self.seed);
        if !self.agents.is_empty() {
            let agents: Vec<String> = self.agents.iter().map(|a| quote(a)).collect();
            let _ = writeln!(y, "agents: [{}]", agents.join(", "));
        }
        let _ = writeln!(y, "data: {}", data(&self.data));
        let _ = writeln!(y, "pinning: {}", pinning(&self.pinning));
        let c = &self.control;
        let _ = write!(
            y,
            "control: {{on_agent_loss: {}, agent_timeout: {}, controller_timeout: {}, ",
            c.on_agent_loss.name(),
            format_duration(c.agent_timeout),
            format_duration(c.controller_timeout),
        );
        if let Some(d) = c.max_clock_offset {
            let _ = write!(y, "max_clock_offset: {}, ", format_duration(d));
        }
        let _ = writeln!(
            y,
            "max_clock_uncertainty: {}, clock_check: {}, collect_interval: {}}}",
            format_duration(c.max_clock_uncertainty),
            match c.clock_check {
                ClockCheck::Warn => "warn",
                ClockCheck::Refuse => "refuse",
            },
            c.collect_interval
                .map_or_else(|| "off".to_string(), format_duration)
        );
        super::overrides::emit_overrides(&self.overrides, &mut y);
        y.push_str("stages:\n");
        for s in &self.stages {
            let _ = writeln!(y, "  - name: {}", quote(&s.name));
            let _ = writeln!(y, "    type: {}", s.kind.name());
            let _ = writeln!(y, "    target: {}", quote(&s.target));
            // A train or checkpoint stage's workers follow from its ranks.
            if !matches!(
                s.kind,
                super::StageKind::Train | super::StageKind::Checkpoint
            ) {
                let _ = writeln!(y, "    concurrency: {}", s.concurrency);
            }
            let o = &s.objects;
            let distribution = match o.distribution {
                KeyDistribution::Uniform => "uniform".to_string(),
                KeyDistribution::Zipf(e) => format!("{{zipf: {}}}", float(e)),
            };
            let partition = match o.partition {
                Partition::Shared => "shared",
                Partition::Agent => "agent",
            };
            let naming = match o.naming.fanout {
                Some(f) => format!("{{width: {}, fanout: {f}}}", o.naming.width),
                None => format!("{{width: {}}}", o.naming.width),
            };
            match o.existing {
                Some(e) => {
                    let _ = writeln!(
                        y,
                        "    objects: {{existing: true, prefix: {}, allow_delete: {}, distribution: {distribution}}}",
                        quote(&o.prefix),
                        e.allow_delete
                    );
                }
                None => {
                    let _ = writeln!(
                        y,
                        "    objects: {{prefix: {}, count: {}, size: {}, naming: {naming}, distribution: {distribution}, partition: {partition}}}",
                        quote(&o.prefix),
                        o.count,
                        size_spec(&o.size)
                    );
                }
            }
            if s.runs_mix() {
                let weights: Vec<String> = s
                    .mix
                    .weights
                    .iter()
                    .map(|(k, w)| format!("{}: {w}", k.plan_name()))
                    .collect();
                let _ = writeln!(y, "    mix: {{{}}}", weights.join(", "));
            }
            if let Some(d) = s.stop.duration {
                let _ = writeln!(y, "    duration: {}", format_duration(d));
            }
            if let Some(n) = s.stop.ops {
                let _ = writeln!(y, "    ops: {n}");
            }
            if let Some(b) = s.stop.bytes {
                let _ = writeln!(y, "    bytes: {}", format_size(b));
            }
            if let Some(w) = s.warmup {
                let _ = writeln!(y, "    warmup: {}", format_duration(w));
            }
            if let Some(search) = &s.search {
                super::search::emit_search(search, &mut y);
            }
            if let Some(steady) = &s.until {
                super::search::emit_until(steady, &mut y);
            }
            if let Some(replay) = &s.replay {
                super::replay::emit(replay, &mut y);
            }
            super::training::emit(&s.training, &mut y);
            if let Pacing::Open { rate, arrivals } = s.pacing {
                let arrivals = match arrivals {
                    Arrivals::Poisson => "poisson",
                    Arrivals::Fixed => "fixed",
                };
                let _ = writeln!(y, "    rate: {}", float(rate));
                let _ = writeln!(y, "    arrivals: {arrivals}");
            }
            super::ramp::emit(s, &mut y);
            match s.range {
                RangeSpec::Random { size } => {
                    let _ = writeln!(y, "    range: {{size: {}}}", format_size(size));
                }
                RangeSpec::Fixed { offset, length } => {
                    let _ = writeln!(
                        y,
                        "    range: {{offset: {}, length: {}}}",
                        format_size(offset),
                        format_size(length)
                    );
                }
            }
            let _ = writeln!(y, "    part_size: {}", format_size(s.part_size));
            if let Some(p) = &s.parallel {
                super::large::emit(&mut y, p);
            }
            super::api::emit(&s.api, &mut y);
            let mut list = Vec::new();
            if let Some(p) = &s.list.prefix {
                list.push(format!("prefix: {}", quote(p)));
            }
            if let Some(d) = s.list.delimiter {
                list.push(format!("delimiter: {}", quote(&d.to_string())));
            }
            if !list.is_empty() {
                let _ = writeln!(y, "    list: {{{}}}", list.join(", "));
            }
            let _ = writeln!(y, "    verify: {}", s.verify);
            let _ = writeln!(y, "    overwrite: {}", s.overwrite);
            let _ = writeln!(y, "    retries: {}", s.retry.retries);
            let _ = writeln!(y, "    retry_backoff: {}", format_duration(s.retry.backoff));
            let _ = writeln!(y, "    timeout: {}", format_duration(s.retry.timeout));
            if let Some(p) = s.pool {
                let _ = writeln!(y, "    pool: {p}");
            }
            if !s.endpoints.is_empty() {
                let _ = writeln!(y, "    endpoints: {}", endpoints(&s.endpoints));
            }
            let _ = writeln!(y, "    balance: {}", s.balance);
        }
        y
    }
}
