"""DynamoDB ApiStore: one table (``STEPWISE_API_TABLE``), partition key ``pk`` (S), sort key ``sk`` (S).

Each item holds ``rev`` (N) and ``body`` (S, the JSON document). Writes are conditional on ``rev``
(or on the item not existing), which is the optimistic concurrency the port expects. The client honours
``AWS_ENDPOINT_URL`` / LocalStack like every other Stepwise AWS client (``stepwise.awsclients``).
"""

from __future__ import annotations

import json
from typing import Any

from stepwise.store.base import ApiStore, StoreConflict


class DynamoApiStore(ApiStore):
    """The API store on one DynamoDB table (pk, sk), with conditional writes."""

    def __init__(self, table: str, *, client: Any = None) -> None:
        if client is None:
            from stepwise import awsclients

            client = awsclients.client("dynamodb")
        self.table = table
        self.client = client

    def _get(self, pk: str, sk: str) -> tuple[int, dict[str, Any]] | None:
        item = self.client.get_item(TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True).get("Item")
        return (int(item["rev"]["N"]), json.loads(item["body"]["S"])) if item else None

    def _put(self, pk: str, sk: str, doc: dict[str, Any], expected: int | None) -> int:
        revision = (expected or 0) + 1
        item = {"pk": {"S": pk}, "sk": {"S": sk}, "rev": {"N": str(revision)}, "body": {"S": json.dumps(doc)}}
        if expected is None:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            condition = {"ConditionExpression": "rev = :rev", "ExpressionAttributeValues": {":rev": {"N": str(expected)}}}
        try:
            self.client.put_item(TableName=self.table, Item=item, **condition)
        except self.client.exceptions.ConditionalCheckFailedException:
            raise StoreConflict(f"{pk}/{sk} changed") from None
        return revision

    def _query(self, pk: str, prefix: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": pk}, ":prefix": {"S": prefix}},
            "ConsistentRead": True,
        }
        while True:
            page = self.client.query(**kwargs)
            out.extend(json.loads(item["body"]["S"]) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
