"""What the deployment adds to the template Chalice generates: tables, their IAM, the custom domain.

`chalice package --merge-template` deep-merges this document into Chalice's
SAM template. The tables come from the pynamodb models through pynamodb's own
schema (what `create_tables()` sends to a local DynamoDB), so a model or an
index cannot exist in the code and be missing on AWS. Chalice's first template
names the functions and their roles: each function gets every table's name in
its environment and a policy limited to item-level actions on those tables.
"""

from typing import Any

from pynamodb.models import Model

# What the request paths call (pynamodb never calls DescribeTable once it has the
# model's schema); no Scan, and nothing that changes a table.
TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query")
INDEX_ACTIONS = ("dynamodb:Query",)
POLICY_ID = "DynamoDBItemAccess"
DOMAIN_ID = "ApiDomainName"
BASE_PATH_MAPPING_ID = "ApiBasePathMapping"
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 3653)

PARAMETERS = {
    "DomainName": {
        "Type": "String",
        "Default": "",
        "Description": "Custom domain for the API (e.g. pay.example.com); empty for the execute-api URL only",
    },
    "CertificateArn": {
        "Type": "String",
        "Default": "",
        "Description": "ACM certificate for DomainName, in the stack's region (required with DomainName)",
    },
    "BasePath": {
        "Type": "String",
        "Default": "",
        "AllowedPattern": "^[A-Za-z0-9._~-]*$",
        "Description": "Path the API is served under on DomainName (e.g. bitpay); empty for the domain's root",
    },
    "PublicBaseUrl": {
        "Type": "String",
        "Default": "",
        "Description": "The API's public URL when a proxy such as CloudFront rewrites the Host header",
    },
    "LogRetentionDays": {
        "Type": "Number",
        "Default": "30",
        "AllowedValues": [str(days) for days in LOG_RETENTION_DAYS],
        "Description": "How long CloudWatch keeps the functions' logs",
    },
}

CONDITIONS = {
    "HasDomainName": {"Fn::Not": [{"Fn::Equals": [{"Ref": "DomainName"}, ""]}]},
    "HasBasePath": {"Fn::Not": [{"Fn::Equals": [{"Ref": "BasePath"}, ""]}]},
    "HasPublicBaseUrl": {"Fn::Not": [{"Fn::Equals": [{"Ref": "PublicBaseUrl"}, ""]}]},
}

RULES = {
    "CertificateForDomain": {
        "RuleCondition": {"Fn::Not": [{"Fn::Equals": [{"Ref": "DomainName"}, ""]}]},
        "Assertions": [
            {
                "Assert": {"Fn::Not": [{"Fn::Equals": [{"Ref": "CertificateArn"}, ""]}]},
                "AssertDescription": "A custom DomainName needs the CertificateArn of its ACM certificate",
            }
        ],
    }
}


def table_logical_id(model: type[Model]) -> str:
    """USERS_TABLE -> UsersTable: the table's resource, and the stack output the CLI reads."""
    return "".join(part.capitalize() for part in model.Meta.table_name_variable.split("_"))


def _table_suffix(model: type[Model]) -> str:
    return model.Meta.table_name_variable.removesuffix("_TABLE").lower().replace("_", "-")


def _key_schema(keys: list[dict]) -> list[dict]:
    # DynamoDB wants the hash key first; pynamodb lists index keys in attribute order.
    return sorted(
        ({"AttributeName": key["AttributeName"], "KeyType": key["KeyType"]} for key in keys),
        key=lambda key: key["KeyType"] != "HASH",
    )


def _index(index: dict) -> dict:
    return {
        "IndexName": index["index_name"],
        "KeySchema": _key_schema(index["key_schema"]),
        "Projection": index["projection"],
    }


def table_resource(model: type[Model]) -> dict:
    schema = model._get_schema()
    properties: dict[str, Any] = {
        # Named after the stack: a change that would replace a table (its keys) fails
        # instead of silently starting an empty one.
        "TableName": {"Fn::Sub": f"${{AWS::StackName}}-{_table_suffix(model)}"},
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": sorted(schema["attribute_definitions"], key=lambda a: a["AttributeName"]),
        "KeySchema": _key_schema(schema["key_schema"]),
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "SSESpecification": {"SSEEnabled": True},
    }
    if schema["global_secondary_indexes"]:
        properties["GlobalSecondaryIndexes"] = [_index(index) for index in schema["global_secondary_indexes"]]
    if schema["local_secondary_indexes"]:
        properties["LocalSecondaryIndexes"] = [_index(index) for index in schema["local_secondary_indexes"]]
    ttl_attribute = model._ttl_attribute()
    if ttl_attribute is not None:
        properties["TimeToLiveSpecification"] = {"AttributeName": ttl_attribute.attr_name, "Enabled": True}
    return {
        "Type": "AWS::DynamoDB::Table",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": properties,
    }


def _index_names(model: type[Model]) -> list[str]:
    schema = model._get_schema()
    return [index["index_name"] for index in schema["global_secondary_indexes"] + schema["local_secondary_indexes"]]


def item_access_policy(models: tuple[type[Model], ...], role_ids: list[str]) -> dict:
    tables = [{"Fn::GetAtt": [table_logical_id(model), "Arn"]} for model in models]
    indexes = [
        {"Fn::Sub": f"${{{table_logical_id(model)}.Arn}}/index/{index_name}"}
        for model in models
        for index_name in _index_names(model)
    ]
    statements = [{"Effect": "Allow", "Action": list(TABLE_ACTIONS), "Resource": tables}]
    if indexes:
        statements.append({"Effect": "Allow", "Action": list(INDEX_ACTIONS), "Resource": indexes})
    return {
        "Type": "AWS::IAM::Policy",
        "Properties": {
            "PolicyName": "dynamodb-item-access",
            "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
            "Roles": [{"Ref": role_id} for role_id in role_ids],
        },
    }


def _resources_of_type(template: dict, resource_type: str) -> dict[str, dict]:
    return {name: resource for name, resource in template["Resources"].items() if resource["Type"] == resource_type}


def _role_id(function_id: str, function: dict) -> str:
    role = function["Properties"].get("Role")
    if not (isinstance(role, dict) and "Fn::GetAtt" in role):
        raise ValueError(f"{function_id} has no role in the template: keep manage_iam_role on in .chalice/config.json")
    return role["Fn::GetAtt"][0]


def _custom_domain(rest_api_id: str) -> dict:
    return {
        DOMAIN_ID: {
            "Type": "AWS::ApiGateway::DomainName",
            "Condition": "HasDomainName",
            "Properties": {
                "DomainName": {"Ref": "DomainName"},
                "RegionalCertificateArn": {"Ref": "CertificateArn"},
                "EndpointConfiguration": {"Types": ["REGIONAL"]},
                "SecurityPolicy": "TLS_1_2",
            },
        },
        BASE_PATH_MAPPING_ID: {
            "Type": "AWS::ApiGateway::BasePathMapping",
            "Condition": "HasDomainName",
            "Properties": {
                "DomainName": {"Ref": DOMAIN_ID},
                "RestApiId": {"Ref": rest_api_id},
                "Stage": {"Ref": f"{rest_api_id}.Stage"},
                "BasePath": {"Fn::If": ["HasBasePath", {"Ref": "BasePath"}, {"Ref": "AWS::NoValue"}]},
            },
        },
    }


def _outputs(chalice_template: dict, models: tuple[type[Model], ...], has_rest_api: bool) -> dict:
    outputs: dict[str, Any] = {
        table_logical_id(model): {
            "Description": f"{model.Meta.table_name_variable} for the CLI (make admin)",
            "Value": {"Ref": table_logical_id(model)},
        }
        for model in models
    }
    if has_rest_api:
        outputs["PublicURL"] = {
            "Description": "Base URL to give BitPay clients",
            "Value": {
                "Fn::If": [
                    "HasPublicBaseUrl",
                    {"Ref": "PublicBaseUrl"},
                    {
                        "Fn::If": [
                            "HasDomainName",
                            {"Fn::Sub": "https://${DomainName}/${BasePath}"},
                            chalice_template["Outputs"]["EndpointURL"]["Value"],
                        ]
                    },
                ]
            },
        }
        outputs["DomainTarget"] = {
            "Condition": "HasDomainName",
            "Description": "Point DomainName here (CNAME or Route 53 alias)",
            "Value": {"Fn::GetAtt": [DOMAIN_ID, "RegionalDomainName"]},
        }
    return outputs


def merge_template(chalice_template: dict, models: tuple[type[Model], ...]) -> dict:
    """The document to merge into `chalice_template` (the one `chalice package` made without it)."""
    functions = _resources_of_type(chalice_template, "AWS::Serverless::Function")
    # Chalice makes at most one REST API (RestAPI) for an app's routes.
    rest_api_id = next(iter(_resources_of_type(chalice_template, "AWS::Serverless::Api")), None)
    environment = {model.Meta.table_name_variable: {"Ref": table_logical_id(model)} for model in models}
    environment["PUBLIC_BASE_URL"] = {"Ref": "PublicBaseUrl"}

    resources: dict[str, Any] = {table_logical_id(model): table_resource(model) for model in models}
    resources[POLICY_ID] = item_access_policy(models, [_role_id(name, f) for name, f in functions.items()])
    for name in functions:
        # A function that ran before its policy was attached would fail its first requests.
        resources[name] = {"DependsOn": [POLICY_ID], "Properties": {"Environment": {"Variables": environment}}}
        # Lambda would create this group itself, but with no expiry and left behind with the stack.
        resources[f"{name}LogGroup"] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": {"Fn::Sub": f"/aws/lambda/${{{name}}}"},
                "RetentionInDays": {"Ref": "LogRetentionDays"},
            },
        }
    if rest_api_id is not None:
        resources.update(_custom_domain(rest_api_id))

    return {
        "Description": "paylambda: a BitPay-compatible payment API (Lambda, API Gateway, DynamoDB)",
        "Parameters": PARAMETERS,
        "Conditions": CONDITIONS,
        "Rules": RULES,
        "Resources": resources,
        "Outputs": _outputs(chalice_template, models, has_rest_api=rest_api_id is not None),
    }
