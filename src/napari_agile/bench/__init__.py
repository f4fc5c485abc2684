"""The paper's protocol (Table 2, Fig. 3) on simulated tissue, and its report."""
