"""The Talks contract: what both halves of talkmill (the pipeline and the engine) must agree on, written once.

Standard library only (the S3 client factory imports boto3 when called), so either half can import it
without the other's dependencies:

    limits      text length, upload and fetch sizes
    formats     result formats, expressions, stitch
    drivers     the driver-URL grammar (bank://natural|lively|subtle[/driver-NN][/flipped])
    voices      the voice a request names: provider types, voice-id shapes, voice_config forms
    cloud_voices  what is known of cloud voices: Polly's locales, the gender of common voice names
    retry       Retry-After parsing (delay-seconds or an HTTP date)
    errors      the error body {kind, description, details} and ContractViolation, a refused field
    signatures  webhook signatures (Talks-Signature, HMAC-SHA256)
    s3          one way to make a boto3 S3 client for AWS and S3-compatible stores
    urlpolicy   which addresses a fetched URL may reach: public only, allowlists, cloud metadata never
"""
