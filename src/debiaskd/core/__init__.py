"""The pure core: configuration, the study's design, statistics, the gate, errors and the guarded file boundary."""
