"""Smart dispatch (智能分派): suggests a department and similar past cases for a new petition,
with reasons; a person always confirms, and each suggestion is logged beside the decision.

    closed cases ──train()──► model file (char n-gram TF-IDF + logistic regression)
    new summary ──suggest()──► departments with probabilities, top n-grams, similar cases

Imports scikit-learn and server.cases models; never aiohttp.
"""
