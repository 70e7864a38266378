"""Benchmarks of pacsweb, alone and against Orthanc. They print figures; they are not tests."""
