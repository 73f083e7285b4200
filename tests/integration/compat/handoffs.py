from ray_orch import Agent

billing_agent = Agent(
    name="Billing Agent",
    role="Billing Specialist",
    goal="Handle all billing-related inquiries",
)

refund_agent = Agent(
    name="Refund Agent",
    role="Refund Specialist",
    goal="Process refund requests",
    handoffs=[billing_agent],
    max_handoffs=1,
)

triage_agent = Agent(
    name="Triage Agent",
    role="Customer Service Triage",
    goal="Route customers to the right specialist",
    instructions="For billing questions transfer to the Billing Agent; for refunds to the "
                 "Refund Agent.",
    handoffs=[billing_agent, refund_agent],
)

print("BILLING:", triage_agent.start("Why was I charged twice this month?"))
print("REFUND:", refund_agent.start("I want my money back and check my invoice twice"))
