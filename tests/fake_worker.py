"""A stand-in for the transformer worker, for the process-handling tests: it speaks the same
JSON-lines protocol and misbehaves on request (run as `python -m fake_worker`)."""

import json
import sys

first = json.loads(sys.stdin.readline())
behaviour = first["spec"]["behaviour"]
print(json.dumps({"notice": "warming up", "level": "warn"}), flush=True)
print(json.dumps({"ready": {"total_steps": 3, "steps_per_epoch": 1}}), flush=True)
for line in sys.stdin:
    if behaviour == "bad-reply":
        print("42", flush=True)
    elif behaviour == "die":
        print("CUDA error: an illegal memory access was encountered", file=sys.stderr, flush=True)
        sys.exit(3)
    elif behaviour == "hang":
        sys.stdin.read()  # never answers
    else:
        print(json.dumps({"metrics": {"step": 1, "total_steps": 3, "train_loss": 1.5, "valid_reward_mean": 0.5}}), flush=True)
