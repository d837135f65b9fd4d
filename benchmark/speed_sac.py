"""Speed of sac.py against Stable-Baselines3's SAC in the update phase, on the CPU.

Both run one after the other (never at the same time), each in its own process with the same number of torch
threads (--threads, default 1), with the hyper-parameters mapped one to one (the table below is printed). Each first collects --learning-starts uniform
random transitions (not timed), then --steps transitions with one gradient step each (timed): the figure is
environment steps per second of that phase, updates included. Ours is read from its metrics file (charts/SPS
logged right after the warm-up and at the end), SB3's is the wall time of its second learn() call.
--interleaved times the update alone instead: ours and SB3's in turn in one process, CPU time per update, a ratio
that other processes on a shared machine disturb far less. Results are appended to
benchmark/results/speed_sac.jsonl.

  python benchmark/speed_sac.py --steps 2000 --repeats 3
  python benchmark/speed_sac.py --interleaved
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

MAPPING = [
    ("networks", "--hidden-sizes 256 256 --activation relu", "net_arch=[256, 256], activation_fn=ReLU"),
    ("batch", "--batch-size 256", "batch_size=256"),
    ("step size", "--learning-rate 3e-4 (actor, critics, alpha)", "learning_rate=3e-4 (all three)"),
    ("discount, Polyak", "--gamma 0.99 --tau 0.005", "gamma=0.99, tau=0.005"),
    ("updates", "one per transition, actor every step", "train_freq=1, gradient_steps=1"),
    ("targets", "--target-network-frequency 1", "target_update_interval=1"),
    ("temperature", "--autotune, alpha from 1, target -dim(A)", "ent_coef='auto', target_entropy='auto'"),
    ("buffer", "--buffer-size 1000000", "buffer_size=1_000_000"),
    ("log-std bound", "tanh into [-5, 2] (CleanRL)", "clamp to [-20, 2]: no effect on speed"),
]


def run_ours(env_id: str, learning_starts: int, steps: int, threads: int = 1) -> float:
    workdir = os.path.join(HERE, "results", "calibration_runs")
    os.makedirs(workdir, exist_ok=True)
    cmd = [
        sys.executable,
        os.path.join(ROOT, "sac.py"),
        *f"--env-id {env_id} --total-timesteps {learning_starts + steps} --learning-starts {learning_starts}".split(),
        *f"--log-every {learning_starts} --eval-episodes 0 --progress-every 1e9 --exp-name speed --torch-threads {threads}".split(),
    ]
    out = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    run_dir = [line.split()[-1] for line in out.stdout.splitlines() if line.startswith("run dir:")][0]
    with open(os.path.join(workdir, run_dir, "metrics.jsonl")) as f:
        sps = {r["global_step"]: r["charts/SPS"] for r in map(json.loads, f) if "charts/SPS" in r}
    # charts/SPS = steps / (elapsed - compile time): the elapsed time at each of the two points
    end = learning_starts + steps
    return steps / (end / sps[end] - learning_starts / sps[learning_starts])


def run_sb3(env_id: str, learning_starts: int, steps: int, threads: int = 1) -> float:
    code = f"""
import time, torch
torch.set_num_threads({threads})
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env
env = make_vec_env({env_id!r}, n_envs=1, seed=1)
model = SAC("MlpPolicy", env, learning_rate=3e-4, buffer_size=1_000_000, learning_starts={learning_starts}, batch_size=256,
            tau=0.005, gamma=0.99, train_freq=1, gradient_steps=1, ent_coef="auto", target_update_interval=1,
            policy_kwargs=dict(net_arch=[256, 256], activation_fn=torch.nn.ReLU), device="cpu", seed=1, verbose=0)
model.learn({learning_starts})
start = time.time()
model.learn({steps}, reset_num_timesteps=False)
print({steps} / (time.time() - start))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return float(out.stdout.strip().splitlines()[-1])


def interleaved(env_id: str, blocks: int = 15, per_block: int = 10) -> dict:
    """Update cost alone, in one process: blocks of gradient steps of ours and of SB3 taken in turn on the same
    replay data shapes, CPU time per update (min and median over the blocks). Interleaving makes the ratio robust
    to other processes sharing the machine, which a sequential timing is not."""
    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.logger import configure

    sys.path.insert(0, ROOT)
    import sac

    torch.set_num_threads(1)
    env = gym.make(env_id)
    model = SAC("MlpPolicy", env, learning_starts=1000, batch_size=256, policy_kwargs=dict(net_arch=[256, 256]), device="cpu", seed=1)
    model.learn(1100)  # a filled buffer; the update then runs in model.train as in learn()
    model.set_logger(configure(None, []))
    args = sac.Args(env_id=env_id)
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    actor = sac.Actor(obs_dim, env.action_space.low, env.action_space.high, args)
    qf = sac.TwinQNetwork(obs_dim, action_dim, args.hidden_sizes, args.activation)
    qf_target = sac.TwinQNetwork(obs_dim, action_dim, args.hidden_sizes, args.activation).requires_grad_(False)
    qf_target.load_state_dict(qf.state_dict())
    log_alpha = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.Adam([*actor.parameters(), *qf.parameters(), log_alpha], lr=3e-4, fused=True)
    rb = sac.ReplayBuffer(10_000, obs_dim, action_dim, torch.device("cpu"))
    data = model.replay_buffer
    n = data.size()
    rb.add(data.observations[:n, 0], data.actions[:n, 0], data.rewards[:n, 0], data.dones[:n, 0], data.next_observations[:n, 0])
    hp = dict(gamma=0.99, autotune=True, target_entropy=-float(action_dim), update_actor=True)

    def ours():
        loss, _ = sac.sac_losses(actor, qf, qf_target, log_alpha, rb.sample(256), **hp)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sac.soft_update(qf_target, qf, tau=0.005)

    def sb3():
        model.train(gradient_steps=1, batch_size=256)

    times = {"ours": [], "sb3": []}
    for _ in range(3):
        ours(), sb3()
    for _ in range(blocks):
        for name, step in (("ours", ours), ("sb3", sb3)):
            start = time.process_time()
            for _ in range(per_block):
                step()
            times[name].append((time.process_time() - start) / per_block * 1e3)
    out = {}
    for name, values in times.items():
        out[name] = {"min_ms": min(values), "median_ms": float(np.median(values))}
        print(f"{name:5} CPU time per update: min {min(values):.2f} ms, median {np.median(values):.2f} ms")
    print(
        f"SB3 / ours: {out['sb3']['min_ms'] / out['ours']['min_ms']:.2f}x (min), {out['sb3']['median_ms'] / out['ours']['median_ms']:.2f}x (median)"
    )
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--env-id", default="Hopper-v5")
    p.add_argument("--learning-starts", type=int, default=1000)
    p.add_argument("--steps", type=int, default=2000, help="timed transitions, one gradient step each")
    p.add_argument("--repeats", type=int, default=3, help="ours then SB3, this many times; medians reported")
    p.add_argument("--threads", type=int, default=1, help="torch threads of both (the sequential timing only)")
    p.add_argument("--interleaved", action="store_true", help="time the update alone, ours and SB3's in turn in one process")
    a = p.parse_args()
    if a.interleaved:
        record = {"env_id": a.env_id, "mode": "interleaved", "time": int(time.time()), **interleaved(a.env_id)}
        with open(os.path.join(HERE, "results", "speed_sac.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
        return
    print(f"{'':18}{'sac.py':46}SB3 SAC")
    for name, ours, sb3 in MAPPING:
        print(f"{name:18}{ours:46}{sb3}")
    impls = ["ours", "sb3"]
    results = {impl: [] for impl in impls}
    for rep in range(a.repeats):
        for impl in impls:
            start = time.time()
            if impl == "sb3":
                sps = run_sb3(a.env_id, a.learning_starts, a.steps, a.threads)
            else:
                sps = run_ours(a.env_id, a.learning_starts, a.steps, a.threads)
            results[impl].append(sps)
            print(f"repeat {rep + 1}: {impl:15} {sps:7.1f} env steps/s in the update phase ({time.time() - start:.0f}s wall)", flush=True)
    record = {"env_id": a.env_id, "steps": a.steps, "learning_starts": a.learning_starts, "threads": a.threads, "time": int(time.time())}
    base = statistics.median(results["sb3"])
    for impl, values in results.items():
        med = statistics.median(values)
        record[impl] = values
        print(f"{impl:15} median {med:7.1f} steps/s  ({med / base:.2f}x SB3)")
    with open(os.path.join(HERE, "results", "speed_sac.jsonl"), "a") as f:
        f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
