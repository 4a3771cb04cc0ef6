"""AWS adapters: DynamoDB tables, S3 outputs, WebSocket pushes, Secrets Manager, boto3 clients."""
