"""Helpers the test modules share (instead of importing each other): records
and their expected stored bytes, event files, TensorBoard backends, logdirs."""
