//! A sweep as JSON for `status --json`, `watch --json` and `submit --json`: the sweep, its
//! metric, its best trial's job, and one row per trial, best first.

use easel_proto::v1 as pb;
use serde_json::{Value, json};

pub fn sweep(sweep: &pb::Sweep) -> Value {
    json!({
        "sweep": sweep.id,
        "name": sweep.name,
        "metric": sweep.metric,
        "method": sweep.method,
        "early_stop": sweep.early_stop,
        "created_at": sweep.created_at,
        "owner": sweep.owner,
        "best": (!sweep.best_job.is_empty()).then_some(&sweep.best_job),
        "finished": super::finished(sweep),
        "trials": sweep.trials.iter().map(trial).collect::<Vec<Value>>(),
    })
}

fn trial(trial: &pb::Trial) -> Value {
    let job = trial.job.clone().unwrap_or_default();
    let params: serde_json::Map<String, Value> = trial
        .params
        .iter()
        .map(|param| (param.key.clone(), toml_value(&param.value)))
        .collect();
    json!({
        "number": trial.number,
        "job": job.id,
        "params": params,
        "state": job.state().name(),
        "metric": trial.metric,
        "epoch": job.epochs_done,
        "epochs": job.epochs_total,
        "seconds": super::trial_seconds(&job),
        "device": job.device,
        "slurm_job_id": (!job.slurm_job_id.is_empty()).then_some(&job.slurm_job_id),
        "error": (!job.reason.is_empty()).then_some(&job.reason),
    })
}

/// A value as TOML wrote it (`16`, `"vgg16"`, `0.001`), as JSON; the text itself when it does
/// not read back.
pub fn toml_value(text: &str) -> Value {
    format!("value = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut table| table.remove("value"))
        .and_then(|value| serde_json::to_value(value).ok())
        .unwrap_or_else(|| Value::String(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trial_values_read_as_the_json_of_their_toml() {
        assert_eq!(toml_value("16"), json!(16));
        assert_eq!(toml_value("\"vgg16\""), json!("vgg16"));
        assert_eq!(toml_value("0.001"), json!(0.001));
        assert_eq!(toml_value("[64, 32]"), json!([64, 32]));
        assert_eq!(toml_value("not toml ="), json!("not toml ="));
    }
}
