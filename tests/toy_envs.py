"""Tiny environments whose answers are known, registered for the tests (`--env-id toy_envs:ToyTrunc-v0`).

ToyTrunc-v0 / ToyTerm-v0: the observation never changes and every step pays 1. ToyTrunc ends only by the
time limit (truncation) after 5 steps, so with a correct bootstrap V(s) -> 1 / (1 - gamma); ToyTerm
terminates after 5 steps, so V(s) is the mean of the 5-step partial returns.
ToyDict-v0 has a Dict observation and ToyMultiDiscrete-v0 a MultiDiscrete action space (both unsupported).
ToyBox05-v0: a Box [0, 5] action space (asymmetric bounds) whose reward prefers actions near 4.
"""

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import register


class ConstantEnv(gym.Env):
    def __init__(self, horizon: int = 5, terminate: bool = False):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.horizon, self.terminate, self.t = horizon, terminate, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.ones(1, np.float32), {}

    def step(self, action):
        self.t += 1
        terminated = self.terminate and self.t >= self.horizon
        return np.ones(1, np.float32), 1.0, terminated, False, {}


class DictObsEnv(ConstantEnv):
    def __init__(self):
        super().__init__()
        self.observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-1.0, 1.0, (1,), np.float32)})

    def reset(self, *, seed=None, options=None):
        return {"x": super().reset(seed=seed)[0]}, {}

    def step(self, action):
        obs, r, te, tr, info = super().step(action)
        return {"x": obs}, r, te, tr, info


class MultiDiscreteEnv(ConstantEnv):
    def __init__(self):
        super().__init__()
        self.action_space = gym.spaces.MultiDiscrete([2, 2])


class Box05Env(gym.Env):
    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Box(0.0, 5.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), {}

    def step(self, action):
        reward = -float(abs(action[0] - 4.0))
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), reward, False, False, {}


register("ToyTrunc-v0", entry_point=ConstantEnv, max_episode_steps=5, kwargs={"terminate": False})
register("ToyTerm-v0", entry_point=ConstantEnv, max_episode_steps=1000, kwargs={"terminate": True})
register("ToyDict-v0", entry_point=DictObsEnv, max_episode_steps=5)
register("ToyMultiDiscrete-v0", entry_point=MultiDiscreteEnv, max_episode_steps=5)
register("ToyBox05-v0", entry_point=Box05Env, max_episode_steps=20)
