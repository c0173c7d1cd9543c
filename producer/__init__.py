"""Producers: turn MinIO bucket notifications (:mod:`producer.webhook`) and bulk listings
(:mod:`producer.backfill`) into ``dedup.*`` tasks on the Redis broker. Run ``python -m producer --help``."""
