"""What the tests share: builders of records and boards, tiny networks, faulty and fragile
networks for the reliability tests, local Ray clusters and network-namespace hosts."""
