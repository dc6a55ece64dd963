"""The study's summary, report and self-contained HTML pages."""
