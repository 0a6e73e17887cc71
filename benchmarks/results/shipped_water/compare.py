"""Scores models on a split with the API: per trajectory, as a physicist would."""
import json, sys
import numpy as np
from learning_to_simulate import api
from learning_to_simulate.training import metrics as metrics_lib

data_path, split, out = sys.argv[1], sys.argv[2], sys.argv[3]
models = sys.argv[4:]  # name=path[:checkpoint][,option=value...]
trajectories = api.load_trajectories(data_path, split)
table = {}
for spec in models:
  name, rest = spec.split("=", 1)
  parts = rest.split(",")
  path_ck = parts[0].split(":")
  options = {}
  for p in parts[1:]:
    k, v = p.split("=")
    options[k] = (v == "1") if k == "clamp_to_bounds" else int(v)
  sim = api.load_simulator(model_path=path_ck[0], data_path=data_path,
                           checkpoint=path_ck[1] if len(path_ck) > 1 else "latest", **options)
  rows = []
  for t in trajectories:
    r = sim.rollout(t)
    s = api.score(r)
    m = s["model"]
    better = min(s["constant_velocity"]["mse_full"], s["frozen"]["mse_full"])
    rows.append({"mse_full": m["mse_full"], "ratio": m["mse_full"] / better,
                 "ke": m.get("kinetic_energy_ratio"), "com": m["centre_of_mass_error"],
                 "ood": m["out_of_domain"]})
  table[name] = {"mean_mse_full": float(np.mean([r["mse_full"] for r in rows])),
                 "mean_ratio": float(np.mean([r["ratio"] for r in rows])),
                 "max_ratio": float(np.max([r["ratio"] for r in rows])),
                 "mean_ke": float(np.mean([r["ke"] for r in rows])),
                 "mean_com": float(np.mean([r["com"] for r in rows])),
                 "max_com": float(np.max([r["com"] for r in rows])),
                 "mean_ood": float(np.mean([r["ood"] for r in rows])),
                 "per_trajectory": rows}
  print(name, {k: round(v, 5) for k, v in table[name].items() if k != "per_trajectory"}, flush=True)
json.dump(table, open(out, "w"), indent=1)
