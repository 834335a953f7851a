"""The few defaults a program needs before it can afford to load the config (`sendjob
result`'s short way: where the config and the result store are), or that a module the
config itself imports needs (signing's time window). gearman_frame.config.defaults
takes them from here, so there is one of each."""

#: Environment variable naming the config file when ``--config`` is not given.
ENV_CONFIG = "GEARMAN_FRAME_CONFIG"
#: The file looked for in the working directory when neither flag nor env names one.
DEFAULT_CONFIG_FILE = "config.yaml"
#: Where sendjob keeps the results it received (relative to the config file).
DEFAULT_RESULT_STORE = "var/results.sqlite"
#: Seconds a signed job stays acceptable after (and before) it was signed.
DEFAULT_MAX_AGE = 300.0
