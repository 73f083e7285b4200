"""A labelled set of customer inquiries for the demo's ``categorize`` decision.

Four routes (the keys of ``ray_orch.demo``'s condition): ``technical`` (something does not
work), ``billing`` (payments, charges, refunds), ``complex`` (legal, security, repeated
complaints) and ``simple`` (a quick question). ``DEV`` was used to choose how the embedded
model scores a decision; ``HELD_OUT`` was only run once that choice was made, to report
accuracy on inquiries the method was not tuned on. (``tests/integration/test_embedded_decisions.py``
has a third, separate set.)
"""

from __future__ import annotations

__all__ = ["DEV", "HELD_OUT", "KEYS"]

KEYS = ("technical", "billing", "complex", "simple")

DEV: list[tuple[str, str]] = [
    ("The app freezes on the loading screen after the latest update.", "technical"),
    ("I get error 500 whenever I try to export my report to CSV.", "technical"),
    ("Push notifications stopped arriving on my Android phone.", "technical"),
    ("The website will not load in Firefox, it just shows a blank page.", "technical"),
    ("Sync between my laptop and phone is broken; changes never show up.", "technical"),
    ("Login fails with 'invalid token' even though my password is correct.", "technical"),
    ("You charged my credit card two times for the same order.", "billing"),
    ("Can I get a refund for the annual plan I bought yesterday?", "billing"),
    ("My invoice shows the wrong amount, it should be 20 euros not 45.", "billing"),
    ("The payment failed but the money was still taken from my bank account.", "billing"),
    ("Please cancel my subscription and stop charging me.", "billing"),
    ("Why did my monthly price go up without any notice?", "billing"),
    ("Someone logged into my account from another country and changed my email. "
     "I think I was hacked.", "complex"),
    ("I have complained four times about this and nobody fixed it. I want to speak "
     "to a manager.", "complex"),
    ("Our lawyers need a copy of all personal data you store about me under GDPR.",
     "complex"),
    ("Your data breach exposed my home address; I am considering legal action.",
     "complex"),
    ("This is my fifth email about the same problem and I am filing a formal "
     "complaint.", "complex"),
    ("We suspect an employee leaked customer records through your platform and "
     "need an investigation.", "complex"),
    ("What time does your support team open on Monday?", "simple"),
    ("Do you have a mobile app for iPhone?", "simple"),
    ("Where can I find your privacy policy?", "simple"),
    ("Is there a student discount?", "simple"),
    ("Which languages does your service support?", "simple"),
    ("How do I change my profile picture?", "simple"),
]

HELD_OUT: list[tuple[str, str]] = [
    ("The video player keeps buffering and then shows a black screen.", "technical"),
    ("My printer integration stopped working after I upgraded to version 4.2.", "technical"),
    ("The search button does nothing when I click it.", "technical"),
    ("Uploads over 10 MB time out with a network error.", "technical"),
    ("I cannot connect the device to Wi-Fi, the setup wizard crashes.", "technical"),
    ("The dashboard charts show no data since this morning.", "technical"),
    ("I was billed for three seats but we only use two.", "billing"),
    ("Your company took money from my card after I cancelled.", "billing"),
    ("I need a receipt with our VAT number for last month's payment.", "billing"),
    ("Please switch my plan from monthly to yearly billing.", "billing"),
    ("The discount code was not applied and I paid full price.", "billing"),
    ("I would like my money back for the unused months.", "billing"),
    ("My account was taken over and the attacker made purchases; my bank says to "
     "contact you in writing.", "complex"),
    ("I have reported this outage six times in two weeks and I am escalating to "
     "your CEO.", "complex"),
    ("We are a hospital and need a signed data-processing agreement reviewed by our "
     "legal team.", "complex"),
    ("I believe your service violated my privacy and I have contacted a lawyer.",
     "complex"),
    ("A former employee still has admin access to our account and is deleting "
     "data.", "complex"),
    ("Nobody answered my last three tickets and my business is losing money every "
     "day.", "complex"),
    ("What is your phone number?", "simple"),
    ("Do you ship to Canada?", "simple"),
    ("Can I use the service on two computers?", "simple"),
    ("What does the Pro plan include?", "simple"),
    ("How long is the free trial?", "simple"),
    ("Are you open on public holidays?", "simple"),
]
