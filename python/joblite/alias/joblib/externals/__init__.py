"""``joblib.externals``: joblib vendors loky and cloudpickle; under joblite's alias
``joblib.externals.loky`` and ``joblib.externals.cloudpickle`` are the installed packages."""
