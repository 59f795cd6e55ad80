"""racepub's benchmarks (`make bench`): racepub driven through its public
API on real parts (a throwaway PostgreSQL, moto's S3 server), each figure
beside a baseline measured in the same run. Run from the repository root:

    python -m bench.run        # the whole table, written to bench/RESULTS.md
"""
