"""Reinforcement learning on a task family: rollouts, GAE, PPO, and the return a policy reaches."""
