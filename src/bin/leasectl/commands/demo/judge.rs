//! Judging a race round from what each instance did.

use std::time::SystemTime;

use serde_json::Value;

/// What one instance of a round did: its name, exit code and events.
pub(super) struct Seen {
    pub(super) name: String,
    pub(super) code: Option<i32>,
    pub(super) events: Vec<Value>,
}

impl Seen {
    pub(super) fn first(&self, event: &str) -> Option<&Value> {
        self.events.iter().find(|e| e["event"] == event)
    }
}

/// The verdict of a race round: exactly one instance acquired and exited 0; every other
/// exited 3 naming it as the holder (in quorum mode, naming another racer that held a minority
/// when it asked is told, not failed).
pub(super) fn judge_race(instances: &[Seen], quorum: bool) -> (bool, String) {
    let winners: Vec<&Seen> = instances
        .iter()
        .filter(|i| i.first("acquired").is_some())
        .collect();
    let [winner] = winners.as_slice() else {
        return (false, format!("{} winners", winners.len()));
    };
    let mut problems = Vec::new();
    let mut notes = String::new();
    if winner.code != Some(0) {
        problems.push(format!("{} exited {}", winner.name, code_text(winner.code)));
    }
    for loser in instances.iter().filter(|i| i.name != winner.name) {
        if loser.code != Some(3) {
            problems.push(format!(
                "{} exited {}, not 3",
                loser.name,
                code_text(loser.code)
            ));
        }
        let named = loser
            .first("held")
            .and_then(|e| e["metadata"]["instanceId"].as_str());
        match named {
            Some(named) if named == winner.name => {}
            Some(named) if quorum && instances.iter().any(|i| i.name == named) => {
                notes.push_str(&format!("; {} named {named} (a partial grant)", loser.name));
            }
            _ => problems.push(format!(
                "{} did not name {} as the holder",
                loser.name, winner.name
            )),
        }
    }
    if problems.is_empty() {
        (
            true,
            format!(
                "{} won, {} exited 3 (held){notes}",
                winner.name,
                instances.len() - 1
            ),
        )
    } else {
        (false, problems.join("; "))
    }
}

/// The `time` of an event.
pub(super) fn time_of(event: &Value) -> Option<SystemTime> {
    humantime::parse_rfc3339(event["time"].as_str()?).ok()
}

pub(super) fn code_text(code: Option<i32>) -> String {
    code.map_or("unknown".into(), |c| c.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    pub(super) fn seen(name: &str, code: i32, events: Vec<Value>) -> Seen {
        Seen {
            name: name.into(),
            code: Some(code),
            events,
        }
    }

    pub(super) fn held_by(name: &str) -> Value {
        json!({"event": "held", "metadata": {"instanceId": name}})
    }

    #[test]
    pub(super) fn a_race_has_one_winner_that_the_others_name() {
        let acquired = json!({"event": "acquired"});
        let good = [
            seen("a", 0, vec![acquired.clone()]),
            seen("b", 3, vec![held_by("a")]),
        ];
        assert!(judge_race(&good, false).0);
        let two = [
            seen("a", 0, vec![acquired.clone()]),
            seen("b", 0, vec![acquired.clone()]),
        ];
        assert_eq!(judge_race(&two, false), (false, "2 winners".into()));
        let none = [
            seen("a", 3, vec![held_by("b")]),
            seen("b", 3, vec![held_by("a")]),
        ];
        assert!(!judge_race(&none, true).0);
        let wrong_name = [
            seen("a", 0, vec![acquired.clone()]),
            seen("b", 3, vec![held_by("z")]),
        ];
        assert!(!judge_race(&wrong_name, true).0);
        let crashed_loser = [seen("a", 0, vec![acquired.clone()]), seen("b", 1, vec![])];
        assert!(!judge_race(&crashed_loser, false).0);
        let partial = [
            seen("a", 0, vec![acquired.clone()]),
            seen("b", 3, vec![held_by("c")]),
            seen("c", 3, vec![held_by("a")]),
        ];
        assert!(judge_race(&partial, true).0);
        assert!(!judge_race(&partial, false).0);
    }
}
