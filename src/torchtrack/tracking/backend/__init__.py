"""The MLflow side of the tracking layer: everything that imports MLflow to read or write the
store. Stages reach it only through `tracking.client` (the store daemon, or in-process)."""
