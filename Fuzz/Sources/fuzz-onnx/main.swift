import FuzzSupport

Fuzz.main(testOneInput: fuzzOneInput)
