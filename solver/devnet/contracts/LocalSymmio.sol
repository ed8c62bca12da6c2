// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import "./SymmioTypes.sol";
import {SymmioBase} from "./SymmioBase.sol";
import {LibLockedValues} from "./LibLockedValues.sol";

/// A small Symmio-compatible "diamond" for local development and tests (chain.md §8): the same
/// function signatures, events, structs, quote statuses and oracle checks. This contract holds
/// the quote lifecycle; SymmioAccountFacet (reached through the fallback) the rest. Collateral
/// is assumed to have 18 decimals. Funding and liquidation are not modelled.
///
/// Revert strings (both contracts):
///   Admin: Only owner | Admin: Invalid public key | Admin: Symbol exists | Admin: Invalid symbol
///   Pausable: Global paused | Pausable: PartyA actions paused | Pausable: PartyB actions paused
///   Accessibility: Should be partyB | Accessibility: PartyA isn't solvent
///   Accessibility: Should be partyA of quote | Accessibility: Should be partyB of quote
///   AccountFacet: Collateral is not set | AccountFacet: Transfer failed | AccountFacet: Insufficient balance
///   AccountFacet: Allocated balance limit reached | AccountFacet: Insufficient allocated balance
///   AccountFacet: partyA will be liquidated
///   PartyAFacet: Pending quotes out of bounds | PartyAFacet: Symbol is not valid | PartyAFacet: Low deadline
///   PartyAFacet: Quantity should be bigger than zero | PartyAFacet: Price should be bigger than zero
///   PartyAFacet: Quote value is low | PartyAFacet: LF is not enough
///   PartyAFacet: Sender isn't allowed in partyBWhiteList | PartyAFacet: insufficient available balance
///   PartyAFacet: Invalid state | PartyAFacet: Invalid quantityToClose | PartyAFacet: Remaining quote value is low
///   PartyBFacet: Invalid state | PartyBFacet: Quote is expired | PartyBFacet: Sender isn't whitelisted
///   PartyBFacet: insufficient available balance | PartyBFacet: Invalid filledAmount
///   PartyBFacet: Opened price isn't valid | PartyBFacet: Quote value is low | PartyBFacet: Leverage is too high
///   PartyBFacet: PartyA will be insolvent | PartyBFacet: PartyB will be insolvent
///   PartyBFacet: Close request is expired | PartyBFacet: Closed price isn't valid
///   PartyBFacet: Insufficient balance | PartyBFacet: Insufficient allocated balance
///   LibQuote: Invalid quoteId | LibQuote: Quote isn't expired | LibQuote: Invalid state
///   LibQuote: Quote not found in pending list
///   LibQuote: PartyA balance is insufficient for the PnL | LibQuote: PartyB balance is insufficient for the PnL
///   LibMuon: Expired signature | LibMuon: TSS not verified | LibMuon: Gateway is not valid
contract LocalSymmio is SymmioBase {
    using LibLockedValues for LockedValues;

    /// Admin, balance and view functions live in SymmioAccountFacet (EIP-170 caps one contract at
    /// 24 KiB); the fallback runs them on this contract's storage, diamond style.
    address internal immutable accountFacet;

    constructor(address accountFacet_) {
        _owner = msg.sender;
        _feeCollector = msg.sender;
        accountFacet = accountFacet_;
    }

    fallback() external {
        address facet = accountFacet;
        assembly {
            calldatacopy(0, 0, calldatasize())
            let ok := delegatecall(gas(), facet, 0, calldatasize(), 0, 0)
            returndatacopy(0, 0, returndatasize())
            switch ok
            case 0 { revert(0, returndatasize()) }
            default { return(0, returndatasize()) }
        }
    }

    // =========================================================================================
    // PartyA
    // =========================================================================================

    function sendQuote(
        address[] calldata partyBsWhiteList,
        uint256 symbolId,
        PositionType positionType,
        OrderType orderType,
        uint256 price,
        uint256 quantity,
        uint256 cva,
        uint256 lf,
        uint256 partyAmm,
        uint256 partyBmm,
        uint256 maxFundingRate,
        uint256 deadline,
        SingleUpnlAndPriceSig calldata upnlSig
    ) external whenPartyAActionsNotPaused notLiquidatedPartyA(msg.sender) {
        _sendQuote(
            QuoteRequest(
                partyBsWhiteList,
                symbolId,
                positionType,
                orderType,
                price,
                quantity,
                cva,
                lf,
                partyAmm,
                partyBmm,
                maxFundingRate,
                deadline,
                address(0)
            ),
            upnlSig
        );
    }

    function sendQuoteWithAffiliate(
        address[] calldata partyBsWhiteList,
        uint256 symbolId,
        PositionType positionType,
        OrderType orderType,
        uint256 price,
        uint256 quantity,
        uint256 cva,
        uint256 lf,
        uint256 partyAmm,
        uint256 partyBmm,
        uint256 maxFundingRate,
        uint256 deadline,
        address affiliate,
        SingleUpnlAndPriceSig calldata upnlSig
    ) external whenPartyAActionsNotPaused notLiquidatedPartyA(msg.sender) returns (uint256 quoteId) {
        quoteId = _sendQuote(
            QuoteRequest(
                partyBsWhiteList,
                symbolId,
                positionType,
                orderType,
                price,
                quantity,
                cva,
                lf,
                partyAmm,
                partyBmm,
                maxFundingRate,
                deadline,
                affiliate
            ),
            upnlSig
        );
    }

    function requestToCancelQuote(uint256 quoteId) external whenPartyAActionsNotPaused onlyPartyAOfQuote(quoteId) {
        Quote storage quote = quotes[quoteId];
        QuoteStatus status = quote.quoteStatus;
        require(status == QuoteStatus.PENDING || status == QuoteStatus.LOCKED, "PartyAFacet: Invalid state");
        QuoteStatus result;
        if (block.timestamp > quote.deadline) {
            result = _expire(quoteId);
        } else if (status == QuoteStatus.PENDING) {
            _removeFromPending(quote);
            _refundTradingFee(quote);
            result = QuoteStatus.CANCELED;
        } else {
            result = QuoteStatus.CANCEL_PENDING;
        }
        quote.quoteStatus = result;
        quote.statusModifyTimestamp = block.timestamp;
        emit RequestToCancelQuote(quote.partyA, quote.partyB, result, quoteId);
    }

    function requestToClosePosition(
        uint256 quoteId,
        uint256 closePrice,
        uint256 quantityToClose,
        OrderType orderType,
        uint256 deadline
    ) external whenPartyAActionsNotPaused onlyPartyAOfQuote(quoteId) notLiquidatedPartyA(msg.sender) {
        Quote storage quote = quotes[quoteId];
        require(quote.quoteStatus == QuoteStatus.OPENED, "PartyAFacet: Invalid state");
        require(deadline >= block.timestamp, "PartyAFacet: Low deadline");
        uint256 openAmount = quote.quantity - quote.closedAmount;
        require(quantityToClose > 0 && quantityToClose <= openAmount, "PartyAFacet: Invalid quantityToClose");
        uint256 remaining = quote.lockedValues.minus(quote.lockedValues.scale(quantityToClose, openAmount)).totalForPartyA();
        require(
            remaining == 0 || remaining >= symbols[quote.symbolId].minAcceptableQuoteValue,
            "PartyAFacet: Remaining quote value is low"
        );
        uint256 closeId = ++lastCloseId;
        closeIds[quoteId] = closeId;
        quote.requestedClosePrice = closePrice;
        quote.quantityToClose = quantityToClose;
        quote.orderType = orderType; // the quote's orderType is the close's while CLOSE_PENDING
        quote.deadline = deadline;
        quote.quoteStatus = QuoteStatus.CLOSE_PENDING;
        quote.statusModifyTimestamp = block.timestamp;
        emit RequestToClosePosition(
            quote.partyA, quote.partyB, quoteId, closePrice, quantityToClose, orderType, deadline, QuoteStatus.CLOSE_PENDING
        );
        emit RequestToClosePosition(
            quote.partyA,
            quote.partyB,
            quoteId,
            closePrice,
            quantityToClose,
            orderType,
            deadline,
            QuoteStatus.CLOSE_PENDING,
            closeId
        );
    }

    function requestToCancelCloseRequest(uint256 quoteId)
        external
        whenPartyAActionsNotPaused
        onlyPartyAOfQuote(quoteId)
    {
        Quote storage quote = quotes[quoteId];
        require(quote.quoteStatus == QuoteStatus.CLOSE_PENDING, "PartyAFacet: Invalid state");
        QuoteStatus result;
        if (block.timestamp > quote.deadline) {
            result = _expire(quoteId);
        } else {
            result = QuoteStatus.CANCEL_CLOSE_PENDING;
            quote.quoteStatus = result;
            quote.statusModifyTimestamp = block.timestamp;
        }
        emit RequestToCancelCloseRequest(quote.partyA, quote.partyB, quoteId, result);
        emit RequestToCancelCloseRequest(quote.partyA, quote.partyB, quoteId, result, closeIds[quoteId]);
    }

    /// Anyone may expire quotes whose deadline has passed (open side → EXPIRED, close side → OPENED).
    function expireQuote(uint256[] calldata expiredQuoteIds) external whenNotGlobalPaused {
        for (uint256 i = 0; i < expiredQuoteIds.length; i++) {
            _expire(expiredQuoteIds[i]);
        }
    }

    function _sendQuote(QuoteRequest memory r, SingleUpnlAndPriceSig memory sig) private returns (uint256 id) {
        address partyA = msg.sender;
        require(partyAPendingQuotes[partyA].length < _pendingQuotesValidLength, "PartyAFacet: Pending quotes out of bounds");
        Symbol storage symbol = symbols[r.symbolId];
        require(symbol.isValid, "PartyAFacet: Symbol is not valid");
        require(r.deadline >= block.timestamp, "PartyAFacet: Low deadline");
        require(r.quantity > 0, "PartyAFacet: Quantity should be bigger than zero");
        require(r.price > 0, "PartyAFacet: Price should be bigger than zero");
        LockedValues memory locked = LockedValues(r.cva, r.lf, r.partyAmm, r.partyBmm);
        uint256 total = locked.totalForPartyA();
        require(total >= symbol.minAcceptableQuoteValue, "PartyAFacet: Quote value is low");
        require(r.lf * WAD >= symbol.minAcceptablePortionLF * total, "PartyAFacet: LF is not enough");
        for (uint256 i = 0; i < r.partyBsWhiteList.length; i++) {
            require(r.partyBsWhiteList[i] != partyA, "PartyAFacet: Sender isn't allowed in partyBWhiteList");
        }
        _verifyPartyAUpnlAndPrice(sig, partyA, r.symbolId);

        uint256 tradingPrice = r.orderType == OrderType.LIMIT ? r.price : sig.price;
        uint256 fee = (r.quantity * tradingPrice / WAD) * symbol.tradingFee / WAD;
        require(
            _availableA(partyA, sig.upnl) >= int256(total + fee) && _allocatedA[partyA] >= fee,
            "PartyAFacet: insufficient available balance"
        );

        id = ++lastId;
        Quote storage quote = quotes[id];
        quote.id = id;
        quote.partyBsWhiteList = r.partyBsWhiteList;
        quote.symbolId = r.symbolId;
        quote.positionType = r.positionType;
        quote.orderType = r.orderType;
        quote.requestedOpenPrice = r.price;
        quote.marketPrice = sig.price;
        quote.quantity = r.quantity;
        quote.initialLockedValues = locked;
        quote.lockedValues = locked;
        quote.maxFundingRate = r.maxFundingRate;
        quote.partyA = partyA;
        quote.quoteStatus = QuoteStatus.PENDING;
        quote.createTimestamp = block.timestamp;
        quote.statusModifyTimestamp = block.timestamp;
        quote.deadline = r.deadline;
        quote.tradingFee = symbol.tradingFee;
        quote.affiliate = r.affiliate;

        partyAPendingQuotes[partyA].push(id);
        LibLockedValues.add(pendingLockedA[partyA], locked);
        _allocatedA[partyA] -= fee;
        heldTradingFees += fee;
        emit BalanceChangePartyA(partyA, fee, BalanceChangeType.PLATFORM_FEE_OUT);
        _emitSendQuote(quote);
    }

    function _emitSendQuote(Quote storage q) private {
        emit SendQuote(
            q.partyA,
            q.id,
            q.partyBsWhiteList,
            q.symbolId,
            q.positionType,
            q.orderType,
            q.requestedOpenPrice,
            q.marketPrice,
            q.quantity,
            q.lockedValues.cva,
            q.lockedValues.lf,
            q.lockedValues.partyAmm,
            q.lockedValues.partyBmm,
            q.tradingFee,
            q.deadline
        );
    }

    // =========================================================================================
    // PartyB
    // =========================================================================================

    function lockQuote(uint256 quoteId, SingleUpnlSig calldata upnlSig) external whenPartyBActionsNotPaused onlyPartyB {
        _lockQuote(quoteId, upnlSig);
    }

    function unlockQuote(uint256 quoteId) external whenPartyBActionsNotPaused onlyPartyBOfQuote(quoteId) {
        Quote storage quote = quotes[quoteId];
        require(quote.quoteStatus == QuoteStatus.LOCKED, "PartyBFacet: Invalid state");
        QuoteStatus result;
        if (block.timestamp > quote.deadline) {
            result = _expire(quoteId);
        } else {
            _removeId(partyBPendingQuotes[msg.sender][quote.partyA], quoteId);
            LibLockedValues.sub(pendingLockedB[msg.sender][quote.partyA], quote.lockedValues);
            quote.partyB = address(0);
            result = QuoteStatus.PENDING;
            quote.quoteStatus = result;
            quote.statusModifyTimestamp = block.timestamp;
        }
        emit UnlockQuote(msg.sender, quoteId, result);
    }

    function acceptCancelRequest(uint256 quoteId) external whenPartyBActionsNotPaused onlyPartyBOfQuote(quoteId) {
        Quote storage quote = quotes[quoteId];
        require(quote.quoteStatus == QuoteStatus.CANCEL_PENDING, "PartyBFacet: Invalid state");
        _removeFromPending(quote);
        _refundTradingFee(quote);
        quote.quoteStatus = QuoteStatus.CANCELED;
        quote.statusModifyTimestamp = block.timestamp;
        emit AcceptCancelRequest(quoteId, QuoteStatus.CANCELED);
    }

    function openPosition(
        uint256 quoteId,
        uint256 filledAmount,
        uint256 openedPrice,
        PairUpnlAndPriceSig calldata upnlSig
    ) external whenPartyBActionsNotPaused onlyPartyBOfQuote(quoteId) {
        _openPosition(quoteId, filledAmount, openedPrice, upnlSig);
    }

    function lockAndOpenQuote(
        uint256 quoteId,
        uint256 filledAmount,
        uint256 openedPrice,
        SingleUpnlSig calldata upnlSig,
        PairUpnlAndPriceSig calldata pairUpnlSig
    ) external whenPartyBActionsNotPaused onlyPartyB {
        _lockQuote(quoteId, upnlSig);
        _openPosition(quoteId, filledAmount, openedPrice, pairUpnlSig);
    }

    function fillCloseRequest(
        uint256 quoteId,
        uint256 filledAmount,
        uint256 closedPrice,
        PairUpnlAndPriceSig calldata upnlSig
    ) external whenPartyBActionsNotPaused onlyPartyBOfQuote(quoteId) {
        Quote storage quote = quotes[quoteId];
        QuoteStatus status = quote.quoteStatus;
        require(
            status == QuoteStatus.CLOSE_PENDING || status == QuoteStatus.CANCEL_CLOSE_PENDING,
            "PartyBFacet: Invalid state"
        );
        require(block.timestamp <= quote.deadline, "PartyBFacet: Close request is expired");
        require(filledAmount > 0 && filledAmount <= quote.quantityToClose, "PartyBFacet: Invalid filledAmount");
        if (quote.orderType == OrderType.MARKET) {
            require(filledAmount == quote.quantityToClose, "PartyBFacet: Invalid filledAmount");
        }
        if (quote.positionType == PositionType.LONG) {
            require(closedPrice >= quote.requestedClosePrice, "PartyBFacet: Closed price isn't valid");
        } else {
            require(closedPrice <= quote.requestedClosePrice, "PartyBFacet: Closed price isn't valid");
        }
        _verifyPairUpnlAndPrice(upnlSig, quote.partyB, quote.partyA, quote.symbolId);
        _closeQuote(quote, filledAmount, closedPrice);
        _nonceA[quote.partyA] += 1;
        _nonceB[quote.partyB][quote.partyA] += 1;
        emit FillCloseRequest(quoteId, quote.partyA, quote.partyB, filledAmount, closedPrice, quote.quoteStatus);
        emit FillCloseRequest(
            quoteId, quote.partyA, quote.partyB, filledAmount, closedPrice, quote.quoteStatus, closeIds[quoteId]
        );
    }

    function acceptCancelCloseRequest(uint256 quoteId) external whenPartyBActionsNotPaused onlyPartyBOfQuote(quoteId) {
        Quote storage quote = quotes[quoteId];
        require(quote.quoteStatus == QuoteStatus.CANCEL_CLOSE_PENDING, "PartyBFacet: Invalid state");
        quote.quoteStatus = QuoteStatus.OPENED;
        quote.statusModifyTimestamp = block.timestamp;
        quote.requestedClosePrice = 0;
        quote.quantityToClose = 0;
        emit AcceptCancelCloseRequest(quoteId, QuoteStatus.OPENED);
        emit AcceptCancelCloseRequest(quoteId, QuoteStatus.OPENED, closeIds[quoteId]);
    }

    function _lockQuote(uint256 quoteId, SingleUpnlSig memory sig) private {
        Quote storage quote = _existingQuote(quoteId);
        require(quote.quoteStatus == QuoteStatus.PENDING, "PartyBFacet: Invalid state");
        require(block.timestamp <= quote.deadline, "PartyBFacet: Quote is expired");
        require(!_liquidationStatus[quote.partyA], "Accessibility: PartyA isn't solvent");
        uint256 n = quote.partyBsWhiteList.length;
        if (n > 0) {
            bool found = false;
            for (uint256 i = 0; i < n && !found; i++) {
                found = quote.partyBsWhiteList[i] == msg.sender;
            }
            require(found, "PartyBFacet: Sender isn't whitelisted");
        }
        _verifyPartyBUpnl(sig, msg.sender, quote.partyA);
        require(
            _availableB(msg.sender, quote.partyA, sig.upnl) >= int256(quote.lockedValues.totalForPartyB()),
            "PartyBFacet: insufficient available balance"
        );
        quote.partyB = msg.sender;
        quote.quoteStatus = QuoteStatus.LOCKED;
        quote.statusModifyTimestamp = block.timestamp;
        partyBPendingQuotes[msg.sender][quote.partyA].push(quoteId);
        LibLockedValues.add(pendingLockedB[msg.sender][quote.partyA], quote.lockedValues);
        emit LockQuote(msg.sender, quoteId);
    }

    function _openPosition(uint256 quoteId, uint256 filledAmount, uint256 openedPrice, PairUpnlAndPriceSig memory sig)
        private
    {
        Quote storage quote = quotes[quoteId];
        require(
            quote.quoteStatus == QuoteStatus.LOCKED || quote.quoteStatus == QuoteStatus.CANCEL_PENDING,
            "PartyBFacet: Invalid state"
        );
        require(block.timestamp <= quote.deadline, "PartyBFacet: Quote is expired");
        require(!_liquidationStatus[quote.partyA], "Accessibility: PartyA isn't solvent");
        require(filledAmount > 0 && filledAmount <= quote.quantity, "PartyBFacet: Invalid filledAmount");
        if (quote.orderType == OrderType.MARKET) {
            require(filledAmount == quote.quantity, "PartyBFacet: Invalid filledAmount");
        }
        if (quote.positionType == PositionType.LONG) {
            require(openedPrice > 0 && openedPrice <= quote.requestedOpenPrice, "PartyBFacet: Opened price isn't valid");
        } else {
            require(openedPrice >= quote.requestedOpenPrice, "PartyBFacet: Opened price isn't valid");
        }
        address partyA = quote.partyA;
        address partyB = quote.partyB;
        _verifyPairUpnlAndPrice(sig, partyB, partyA, quote.symbolId);

        _removeFromPending(quote);
        uint256 childId = filledAmount < quote.quantity ? _splitRemainder(quote, filledAmount) : 0;

        // Locked values were quoted at the requested price; rescale them to the fill price so the
        // leverage the user asked for is the leverage of the position. The leverage check
        // quantity×openedPrice / applied(cva+lf+partyAmm) equals quantity×requestedPrice / (cva+lf+partyAmm)
        // up to rounding, so it is evaluated on the unrounded side to be exact at max leverage.
        require(
            (filledAmount * quote.requestedOpenPrice / WAD) * WAD
                <= symbols[quote.symbolId].maxLeverage * quote.lockedValues.totalForPartyA(),
            "PartyBFacet: Leverage is too high"
        );
        LockedValues memory applied = quote.lockedValues.scale(openedPrice, quote.requestedOpenPrice);
        quote.lockedValues = applied;
        quote.initialLockedValues = applied;
        quote.openedPrice = openedPrice;
        quote.initialOpenedPrice = openedPrice;
        quote.quoteStatus = QuoteStatus.OPENED;
        quote.statusModifyTimestamp = block.timestamp;
        quote.lastFundingPaymentTimestamp = block.timestamp;
        LibLockedValues.add(lockedA[partyA], applied);
        LibLockedValues.add(lockedB[partyB][partyA], applied);
        _addOpenPosition(quote);

        // The fee of the filled part is earned now.
        uint256 fee = _tradingFee(quote);
        heldTradingFees -= fee;
        _balanceOf[_feeCollector] += fee;

        _nonceA[partyA] += 1;
        _nonceB[partyB][partyA] += 1;

        // Both sides must stay solvent, counting the new position at the signed price.
        int256 newPnl = _pnlOfPartyA(quote.positionType, openedPrice, sig.price, filledAmount);
        require(_availableA(partyA, sig.upnlPartyA + newPnl) >= 0, "PartyBFacet: PartyA will be insolvent");
        require(_availableB(partyB, partyA, sig.upnlPartyB - newPnl) >= 0, "PartyBFacet: PartyB will be insolvent");

        emit OpenPosition(quoteId, partyA, partyB, filledAmount, openedPrice);
        if (childId != 0) {
            Quote storage child = quotes[childId];
            if (child.quoteStatus == QuoteStatus.PENDING) {
                _emitSendQuote(child);
            } else {
                emit AcceptCancelRequest(childId, QuoteStatus.CANCELED);
            }
        }
    }

    /// A partial LIMIT fill: the unfilled remainder becomes a new quote (PENDING, or CANCELED
    /// when the user had asked to cancel), the parent keeps the filled part.
    function _splitRemainder(Quote storage parent, uint256 filledAmount) private returns (uint256 childId) {
        LockedValues memory filled = parent.lockedValues.scale(filledAmount, parent.quantity);
        LockedValues memory rest = parent.lockedValues.minus(filled);
        require(
            rest.totalForPartyA() >= symbols[parent.symbolId].minAcceptableQuoteValue, "PartyBFacet: Quote value is low"
        );
        childId = ++lastId;
        Quote storage child = quotes[childId];
        child.id = childId;
        child.partyBsWhiteList = parent.partyBsWhiteList;
        child.symbolId = parent.symbolId;
        child.positionType = parent.positionType;
        child.orderType = parent.orderType;
        child.requestedOpenPrice = parent.requestedOpenPrice;
        child.marketPrice = parent.marketPrice;
        child.quantity = parent.quantity - filledAmount;
        child.initialLockedValues = rest;
        child.lockedValues = rest;
        child.maxFundingRate = parent.maxFundingRate;
        child.partyA = parent.partyA;
        child.parentId = parent.id;
        child.createTimestamp = block.timestamp;
        child.statusModifyTimestamp = block.timestamp;
        child.deadline = parent.deadline;
        child.tradingFee = parent.tradingFee;
        child.affiliate = parent.affiliate;
        if (parent.quoteStatus == QuoteStatus.CANCEL_PENDING) {
            child.quoteStatus = QuoteStatus.CANCELED;
            _refundTradingFee(child);
        } else {
            child.quoteStatus = QuoteStatus.PENDING;
            partyAPendingQuotes[child.partyA].push(childId);
            LibLockedValues.add(pendingLockedA[child.partyA], rest);
        }
        parent.quantity = filledAmount;
        parent.lockedValues = filled;
    }

    /// Settle `filledAmount` of a close request at `closedPrice`: release the locked share and move
    /// the realized PnL between partyA's allocated balance and partyB's balance for that partyA.
    function _closeQuote(Quote storage quote, uint256 filledAmount, uint256 closedPrice) private {
        address partyA = quote.partyA;
        address partyB = quote.partyB;
        uint256 openAmount = quote.quantity - quote.closedAmount;
        LockedValues memory released = quote.lockedValues.scale(filledAmount, openAmount);
        quote.lockedValues = quote.lockedValues.minus(released);
        LibLockedValues.sub(lockedA[partyA], released);
        LibLockedValues.sub(lockedB[partyB][partyA], released);

        int256 pnl = _pnlOfPartyA(quote.positionType, quote.openedPrice, closedPrice, filledAmount);
        if (pnl > 0) {
            uint256 profit = uint256(pnl);
            require(
                _allocatedB[partyB][partyA] >= profit, "LibQuote: PartyB balance is insufficient for the PnL"
            );
            _allocatedB[partyB][partyA] -= profit;
            _allocatedA[partyA] += profit;
            emit BalanceChangePartyA(partyA, profit, BalanceChangeType.REALIZED_PNL_IN);
            emit BalanceChangePartyB(partyB, partyA, profit, BalanceChangeType.REALIZED_PNL_OUT);
        } else if (pnl < 0) {
            uint256 loss = uint256(-pnl);
            require(_allocatedA[partyA] >= loss, "LibQuote: PartyA balance is insufficient for the PnL");
            _allocatedA[partyA] -= loss;
            _allocatedB[partyB][partyA] += loss;
            emit BalanceChangePartyA(partyA, loss, BalanceChangeType.REALIZED_PNL_OUT);
            emit BalanceChangePartyB(partyB, partyA, loss, BalanceChangeType.REALIZED_PNL_IN);
        }

        quote.avgClosedPrice =
            (quote.avgClosedPrice * quote.closedAmount + closedPrice * filledAmount) / (quote.closedAmount + filledAmount);
        quote.closedAmount += filledAmount;
        quote.quantityToClose -= filledAmount;
        if (quote.closedAmount == quote.quantity) {
            quote.quoteStatus = QuoteStatus.CLOSED;
            quote.requestedClosePrice = 0;
            _removeOpenPosition(quote);
        } else if (quote.quoteStatus == QuoteStatus.CANCEL_CLOSE_PENDING || quote.quantityToClose == 0) {
            quote.quoteStatus = QuoteStatus.OPENED;
            quote.requestedClosePrice = 0;
            quote.quantityToClose = 0;
        }
        // else: a LIMIT close request partly filled stays CLOSE_PENDING for the rest.
        quote.statusModifyTimestamp = block.timestamp;
    }
}
