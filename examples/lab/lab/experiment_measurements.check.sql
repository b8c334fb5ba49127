-- one row per sample
select sample_id from raw.samples
except
select sample_id from lab.experiment_measurements
