# dfb_transcode: JSON tape (yajl) + msgpack transcoder + envelope.
