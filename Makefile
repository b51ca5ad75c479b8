# The two commands: `make run` serves paylambda locally, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install run test lint bench mutate

$(BIN)/.installed: requirements.txt requirements-vendor.txt requirements-dev.txt requirements-bitpay8.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade --target $(VENV)/bitpay8 -r requirements-bitpay8.txt
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/python scripts/run_local.py

test: install
	sh scripts/install_chromium.sh
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Mutation testing of the money paths (minutes; not part of make test): scores per module and survivors.
mutate: install
	$(BIN)/python scripts/mutate.py $(MODULES)

bench: install
	for script in bench/*.py; do PYTHONPATH=. $(BIN)/python $$script || exit 1; done

# Deploying to AWS (README, "Deploy to AWS"): make deploy STAGE=prod
STAGE ?= prod
STACK ?= paylambda-$(STAGE)
AWS ?= aws
DIST = dist/$(STAGE)
# These two ask the AWS CLI, so each is computed once, when first used ($(eval ...) replaces it).
REGION ?= $(eval REGION := $(or $(AWS_REGION),$(AWS_DEFAULT_REGION),$(shell $(AWS) configure get region)))$(REGION)
# Where `aws cloudformation package` uploads the code (created on first deploy).
DEPLOY_BUCKET ?= $(eval DEPLOY_BUCKET := $(STACK)-artifacts-$(shell $(AWS) sts get-caller-identity \
	--query Account --output text)-$(REGION))$(DEPLOY_BUCKET)
# Stack parameters are passed only when given (make deploy DOMAIN_NAME=... ); the stack keeps the rest.
parameter = $(if $(filter-out undefined,$(origin $(1))),$(2)=$($(1)))
PARAMETERS = $(strip $(call parameter,DOMAIN_NAME,DomainName) $(call parameter,CERTIFICATE_ARN,CertificateArn) \
	$(call parameter,BASE_PATH,BasePath) $(call parameter,PUBLIC_BASE_URL,PublicBaseUrl) \
	$(call parameter,EMAIL_SENDER,EmailSender) $(call parameter,LOG_RETENTION_DAYS,LogRetentionDays))
OUTPUTS = --query "Stacks[0].Outputs[?OutputKey=='PublicURL' || OutputKey=='DomainTarget'].[OutputKey,OutputValue]"

.PHONY: package deploy admin destroy

package: install
	$(BIN)/python -m deploy.package --stage $(STAGE) --stack $(STACK) --out $(DIST)

deploy: package
	@test -n "$(REGION)" || { echo "No AWS region: set AWS_REGION or run aws configure." >&2; exit 1; }
	$(AWS) s3api head-bucket --bucket $(DEPLOY_BUCKET) 2>/dev/null || $(AWS) s3 mb s3://$(DEPLOY_BUCKET) --region $(REGION)
	$(AWS) cloudformation package --region $(REGION) --template-file $(DIST)/package/sam.json \
		--s3-bucket $(DEPLOY_BUCKET) --output-template-file $(DIST)/packaged.yaml
	$(AWS) cloudformation deploy --region $(REGION) --template-file $(DIST)/packaged.yaml --stack-name $(STACK) \
		--capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND --no-fail-on-empty-changeset \
		$(if $(PARAMETERS),--parameter-overrides $(PARAMETERS))
	@$(AWS) cloudformation describe-stacks --region $(REGION) --stack-name $(STACK) $(OUTPUTS) --output text

# make admin ARGS="create-user alice --admin": the CLI against the stack's tables.
admin: install
	$(BIN)/python -m deploy.admin --stack $(STACK) $(if $(REGION),--region $(REGION)) $(ARGS)

# Deletes the stack; its DynamoDB tables are kept (DeletionPolicy Retain).
destroy:
	$(AWS) cloudformation delete-stack --region $(REGION) --stack-name $(STACK)
	$(AWS) cloudformation wait stack-delete-complete --region $(REGION) --stack-name $(STACK)
	@echo "Stack $(STACK) deleted; its DynamoDB tables ($(STACK)-*) remain (README: removing everything)."
