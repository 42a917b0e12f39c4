//! What a torture run tortures, and which deployments the long run takes.

use super::cluster;

/// What a run tortures: `Instances(1)` single mode, `Instances(n)` a quorum of n, or a Redis
/// Cluster of three primaries with a replica each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    Instances(usize),
    Cluster,
}

impl Topology {
    /// Its name in `LEASECTL_TORTURE_DEPLOYMENTS`.
    pub fn name(self) -> String {
        match self {
            Topology::Instances(1) => "single".into(),
            Topology::Instances(n) => format!("quorum_{n}"),
            Topology::Cluster => "cluster".into(),
        }
    }

    pub fn label(self) -> String {
        match self {
            Topology::Instances(1) => "single".into(),
            Topology::Instances(n) => format!("quorum of {n}"),
            Topology::Cluster => match cluster::wait_replicas() {
                Some(n) => format!("cluster (WaitReplicas {n})"),
                None => "cluster".into(),
            },
        }
    }
}

/// The deployments of the long run: `LEASECTL_TORTURE_DEPLOYMENTS` (a comma-separated list of
/// `single`, `quorum_3`, `quorum_5`, `cluster`), by default all four.
pub fn long_deployments() -> Vec<Topology> {
    let all = [
        Topology::Instances(1),
        Topology::Instances(3),
        Topology::Instances(5),
        Topology::Cluster,
    ];
    let Ok(asked) = std::env::var("LEASECTL_TORTURE_DEPLOYMENTS") else {
        return all.to_vec();
    };
    let asked: Vec<&str> = asked.split(',').map(str::trim).collect();
    for name in &asked {
        assert!(
            all.iter().any(|t| t.name() == *name),
            "LEASECTL_TORTURE_DEPLOYMENTS: unknown deployment {name:?} (single, quorum_3, \
             quorum_5, cluster)"
        );
    }
    all.into_iter()
        .filter(|t| asked.contains(&t.name().as_str()))
        .collect()
}
