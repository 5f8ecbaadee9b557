"""TORTA's learned macro policy: a slot-level surrogate of the fleet (`torta.rl.env`), an environment over
the real replay (`torta.rl.replay_env`), PPO with optimal-transport supervision (`torta.rl.ppo`), training
(`torta.rl.train`) and the replay policies `torta`, `torta-no-forecast`, `torta-no-micro`
(`torta.rl.learned`, registered on import)."""
