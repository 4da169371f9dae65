"""Results tables (terminal, markdown) and the HTML report with its plots."""
